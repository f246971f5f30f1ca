// Tensor, Nest and TimeStep messages of protos/tfa_policy_grpc/v1/types.proto,
// built and read as plain objects (the shape @grpc/proto-loader uses with
// keepCase, enums as strings and oneofs). A Tensor's `content` holds its
// elements in row-major order, little-endian, with no padding.
'use strict';

// Element size and Buffer accessors of every numeric dtype this client reads
// and writes. 64-bit integers travel as BigInt and come back as Number.
const DTYPES = {
  DTYPE_BOOL: { size: 1, read: (b, o) => b.readUInt8(o) !== 0, write: (b, v, o) => b.writeUInt8(v ? 1 : 0, o) },
  DTYPE_INT8: { size: 1, read: (b, o) => b.readInt8(o), write: (b, v, o) => b.writeInt8(v, o) },
  DTYPE_INT16: { size: 2, read: (b, o) => b.readInt16LE(o), write: (b, v, o) => b.writeInt16LE(v, o) },
  DTYPE_INT32: { size: 4, read: (b, o) => b.readInt32LE(o), write: (b, v, o) => b.writeInt32LE(v, o) },
  DTYPE_INT64: {
    size: 8, read: (b, o) => Number(b.readBigInt64LE(o)), write: (b, v, o) => b.writeBigInt64LE(BigInt(v), o),
  },
  DTYPE_UINT8: { size: 1, read: (b, o) => b.readUInt8(o), write: (b, v, o) => b.writeUInt8(v, o) },
  DTYPE_UINT16: { size: 2, read: (b, o) => b.readUInt16LE(o), write: (b, v, o) => b.writeUInt16LE(v, o) },
  DTYPE_UINT32: { size: 4, read: (b, o) => b.readUInt32LE(o), write: (b, v, o) => b.writeUInt32LE(v, o) },
  DTYPE_UINT64: {
    size: 8, read: (b, o) => Number(b.readBigUInt64LE(o)), write: (b, v, o) => b.writeBigUInt64LE(BigInt(v), o),
  },
  DTYPE_FLOAT32: { size: 4, read: (b, o) => b.readFloatLE(o), write: (b, v, o) => b.writeFloatLE(v, o) },
  DTYPE_FLOAT64: { size: 8, read: (b, o) => b.readDoubleLE(o), write: (b, v, o) => b.writeDoubleLE(v, o) },
};

function dtypeInfo(dtype) {
  const info = DTYPES[dtype];
  if (!info) throw new Error(`dtype ${dtype} is not supported by this client`);
  return info;
}

function product(shape) {
  return shape.reduce((n, d) => n * Number(d), 1);
}

// A Tensor message of `dtype` and `shape` holding `values` (flat, row-major).
function tensor(dtype, shape, values) {
  const info = dtypeInfo(dtype);
  if (values.length !== product(shape)) {
    throw new Error(`${values.length} values do not fill shape [${shape}]`);
  }
  const content = Buffer.alloc(values.length * info.size);
  values.forEach((v, i) => info.write(content, v, i * info.size));
  return { dtype, shape, content };
}

// The flat element values of a Tensor message (checked against its shape).
function tensorValues(t) {
  const info = dtypeInfo(t.dtype);
  const count = product(t.shape);
  if (t.content.length !== count * info.size) {
    throw new Error(`tensor of shape [${t.shape}] and ${t.dtype} has ${t.content.length} content bytes`);
  }
  return Array.from({ length: count }, (_, i) => info.read(t.content, i * info.size));
}

const leaf = (t) => ({ tensor: t });
const EMPTY_TUPLE = { tuple: { values: [] } };

// A TimeStep message of `rows` observations (each an array of numbers), or of
// one unbatched observation when `rows` is null. stepTypes, rewards and
// discounts have one entry per row (TF-Agents: FIRST = 0, MID = 1, LAST = 2).
function timeStep(observations, obsDtype, { stepTypes, rewards, discounts, batched }) {
  const outer = batched ? [observations.length] : [];
  const width = observations[0].length;
  return {
    step_type: tensor('DTYPE_INT32', outer, stepTypes),
    reward: leaf(tensor('DTYPE_FLOAT32', outer, rewards)),
    discount: tensor('DTYPE_FLOAT32', outer, discounts),
    observation: leaf(tensor(obsDtype, [...outer, width], observations.flat())),
  };
}

// An ActionRequest for `observations` (batched when `batched`), of a stateless policy.
function actionRequest(policy, observations, obsDtype, steps) {
  const request = { policy, time_step: timeStep(observations, obsDtype, steps), policy_state: EMPTY_TUPLE };
  if (steps.batched) request.batch_size = observations.length;
  return request;
}

// The flat action values of an ActionResponse whose action nest is one tensor.
function actionValues(response) {
  const action = response.policy_step && response.policy_step.action;
  if (!action || action.value !== 'tensor') {
    throw new Error('the answer has no single-tensor action (this client handles single-tensor action specs)');
  }
  return tensorValues(action.tensor);
}

function formatNumber(v) {
  if (typeof v !== 'number' || (Number.isInteger(v) && Math.abs(v) < 1e15)) return String(v);
  return String(Number(v.toPrecision(6)));
}

function formatSpec(spec) {
  const shape = `(${spec.shape.join(', ')}${spec.shape.length === 1 ? ',' : ''})`;
  let text = `${spec.dtype.replace('DTYPE_', '').toLowerCase()}${shape}`;
  if (spec.name) text = `${text} '${spec.name}'`;
  if (spec.bounds) {
    const fmt = (t) => {
      const values = tensorValues(t).map(formatNumber);
      return values.length === 1 ? values[0] : `[${values.join(', ')}]`;
    };
    const [low, high] = [fmt(spec.bounds.minimum), fmt(spec.bounds.maximum)];
    text += low.startsWith('[') ? ` min ${low} max ${high}` : ` in [${low}, ${high}]`;
  }
  return text;
}

// Lines describing a spec Nest (or a bare ArraySpec), indented by `indent`.
function describeSpecs(nest, indent = '') {
  if (!nest) return [`${indent}(none)`];
  if (nest.shape !== undefined && nest.dtype !== undefined) return [`${indent}${formatSpec(nest)}`];
  switch (nest.value) {
    case 'spec':
      return [`${indent}${formatSpec(nest.spec)}`];
    case 'tuple':
    case 'list':
      if (!nest[nest.value].values.length) return [`${indent}()`];
      return nest[nest.value].values.flatMap((v, i) => [`${indent}[${i}]`, ...describeSpecs(v, `${indent}  `)]);
    case 'dict':
      return nest.dict.entries.flatMap((e) => [`${indent}${e.key}:`, ...describeSpecs(e.value, `${indent}  `)]);
    case 'named_tuple':
      return [`${indent}${nest.named_tuple.type_name}`,
        ...nest.named_tuple.fields.flatMap((f) => [`${indent}  ${f.key}:`, ...describeSpecs(f.value, `${indent}    `)])];
    case 'none':
      return [`${indent}None`];
    default:
      return [`${indent}(${nest.value || 'unset'})`];
  }
}

// The observation spec of a policy, checked to be one float vector (what the
// CartPole simulation produces).
function vectorObservationSpec(specs, width) {
  const nest = specs.time_step_spec.observation;
  const spec = nest && nest.value === 'spec' ? nest.spec : null;
  const ok = spec && spec.shape.length === 1 && Number(spec.shape[0]) === width
    && (spec.dtype === 'DTYPE_FLOAT32' || spec.dtype === 'DTYPE_FLOAT64');
  if (!ok) {
    const got = describeSpecs(nest).join(' ').trim();
    throw new Error(`this client simulates CartPole: it needs a float observation of shape (${width},), `
      + `the policy wants ${got}`);
  }
  return spec;
}

module.exports = {
  actionRequest, actionValues, describeSpecs, tensor, tensorValues, timeStep, vectorObservationSpec, EMPTY_TUPLE,
};
