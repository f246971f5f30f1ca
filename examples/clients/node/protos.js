// Loads protos/ at run time: the PolicyService client (@grpc/proto-loader) and
// the google.rpc error messages (protobufjs), and reads a failed call's
// structured error: a google.rpc.Status whose details hold BadRequest and
// ErrorInfo, in the `grpc-status-details-bin` trailer of a failed call or in
// ActionResponse.error on ActionStream.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// Field names as in the .proto files, enums as their names, 64-bit integers
// as Numbers (versions and request ids stay far below 2^53), unset fields
// present, and the name of the set field of each oneof (Nest.value).
const OPTIONS = { keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true };

const DEFAULT_PROTOS = path.resolve(__dirname, '..', '..', '..', 'protos');
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));
const DETAILS_TRAILER = 'grpc-status-details-bin';
const SERVICE_PROTO = 'tfa_policy_grpc/v1/policy_service.proto';

// {PolicyService, root}: the generated-at-run-time client class and a
// protobufjs root holding google.rpc.Status, BadRequest and ErrorInfo.
function load(protosDir = DEFAULT_PROTOS) {
  if (!fs.existsSync(path.join(protosDir, SERVICE_PROTO))) {
    throw new Error(`no ${SERVICE_PROTO} under ${protosDir} (give the protos/ folder with --protos DIR)`);
  }
  const definition = protoLoader.loadSync(SERVICE_PROTO,
    { ...OPTIONS, includeDirs: [protosDir] });
  const { PolicyService } = grpc.loadPackageDefinition(definition).tfa_policy_grpc.v1;
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(protosDir, target));
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  return { PolicyService, root };
}

function decode(root, typeName, bytes) {
  const type = root.lookupType(typeName);
  return type.toObject(type.decode(bytes), OPTIONS);
}

// {code, codeName, message, fields: [{field, description}], reason, domain}
// of a google.rpc.Status object (as proto-loader or protobufjs decode it).
function readStatus(root, status) {
  const error = { code: status.code, codeName: CODE_NAMES[status.code] || 'UNKNOWN', message: status.message,
    fields: [], reason: '', domain: '' };
  for (const detail of status.details || []) {
    const typeName = detail.type_url.slice(detail.type_url.lastIndexOf('/') + 1);
    if (typeName === 'google.rpc.BadRequest') {
      const badRequest = decode(root, typeName, detail.value);
      error.fields.push(...badRequest.field_violations.map((v) => ({ field: v.field, description: v.description })));
    } else if (typeName === 'google.rpc.ErrorInfo') {
      const info = decode(root, typeName, detail.value);
      error.reason = info.reason;
      error.domain = info.domain;
    }
  }
  return error;
}

// The structured error of a failed grpc-js call (from its details trailer, or
// from its code and message alone when the server sent none).
function readCallError(root, err) {
  const trailer = err.metadata ? err.metadata.get(DETAILS_TRAILER) : [];
  if (trailer.length) return readStatus(root, decode(root, 'google.rpc.Status', trailer[0]));
  return readStatus(root, { code: err.code, message: err.details || err.message, details: [] });
}

function formatError(error) {
  const lines = [`${error.codeName}: ${error.message}`];
  for (const { field, description } of error.fields) lines.push(`  field ${field}: ${description}`);
  if (error.reason) lines.push(`  reason ${error.reason} (domain ${error.domain})`);
  return lines;
}

module.exports = { CODE_NAMES, DEFAULT_PROTOS, formatError, load, readCallError, readStatus };
