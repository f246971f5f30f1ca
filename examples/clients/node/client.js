#!/usr/bin/env node
// A Node.js client of the tfa-policy-grpc PolicyService, written from protos/
// alone: lists the policies and prints their specs, runs a CartPole episode
// simulated here with actions from the server over ActionStream, makes one
// unary Action call with a batch, and one call that fails, reading its
// structured error (google.rpc.Status with BadRequest and ErrorInfo details).
'use strict';

const grpc = require('@grpc/grpc-js');
const { CartPole } = require('./cartpole');
const protos = require('./protos');
const tensors = require('./tensors');

const USAGE = `usage: node client.js ADDRESS [POLICY] [options]

  ADDRESS            host:port of a policy server (policy-server prints it at startup)
  POLICY             policy name; default: the server's default policy
  --seed N           seed of the simulated CartPole and of the batch (default 0)
  --batch N          rows of the unary Action batch (default 8)
  --timeout SECONDS  deadline of each call, and of the stream (default 30)
  --protos DIR       where the .proto files are (default: this repository's protos/)
  --json             print one JSON document of everything sent and received instead of text`;

const FIRST = 0;
const MID = 1;
const LAST = 2;

function parseArgs(argv) {
  const args = { policy: '', seed: 0, batch: 8, timeout: 30, protos: protos.DEFAULT_PROTOS, json: false };
  const positional = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    if (arg === '-h' || arg === '--help') throw new UsageError('');
    else if (arg === '--json') args.json = true;
    else if (arg === '--protos') args.protos = value();
    else if (['--seed', '--batch', '--timeout'].includes(arg)) {
      const number = Number(value());
      if (!Number.isFinite(number) || number < 0) throw new UsageError(`${arg} wants a number >= 0`);
      args[arg.slice(2)] = number;
    } else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  if (positional.length < 1 || positional.length > 2) throw new UsageError('give ADDRESS and optionally POLICY');
  [args.address, args.policy = ''] = positional;
  if (args.batch < 1) throw new UsageError('--batch wants at least 1 row');
  return args;
}

class UsageError extends Error {}

// A call's options: its deadline, `seconds` from now.
const deadline = (seconds) => ({ deadline: new Date(Date.now() + seconds * 1000) });

function unary(client, method, request, seconds) {
  return new Promise((resolve, reject) => {
    client[method](request, deadline(seconds), (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// One ActionStream: each request gets exactly one response with its request_id. Each request says how many
// answers were read (answers_read), as a server with --stream-acks=required wants; this client has one request
// in flight at a time, so it never needs to acknowledge alone.
class ActionStream {
  constructor(client, seconds) {
    this.pending = new Map();
    this.nextId = 1;
    this.read = 0;
    this.failure = null;
    this.closed = false;
    this.call = client.ActionStream(deadline(seconds));
    this.call.on('data', (response) => {
      this.read += 1;
      const waiter = this.pending.get(response.request_id);
      this.pending.delete(response.request_id);
      if (waiter) waiter.resolve(response);
    });
    this.done = new Promise((resolve, reject) => {
      this.call.on('error', (err) => {
        this.failure = err;
        for (const waiter of this.pending.values()) waiter.reject(err);
        this.pending.clear();
        reject(err);
      });
      this.call.on('status', (status) => {
        if (status.code !== grpc.status.OK) return; // 'error' reports it
        for (const [id, waiter] of this.pending) waiter.reject(new Error(`the stream ended without answering ${id}`));
        this.pending.clear();
        resolve();
      });
    });
    this.done.catch(() => {}); // reported through send() or close()
  }

  // The ActionResponse to `request` (its request_id is set here).
  send(request) {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.call.write({ ...request, request_id: id, answers_read: this.read });
    });
  }

  // Half-closes the stream and waits for the server to end it.
  close() {
    this.closed = true;
    this.call.end();
    return this.done;
  }

  // Ends the call at once unless close() ended it (after a failure).
  cancelUnlessClosed() {
    if (!this.closed) this.call.cancel();
  }
}

function waitForReady(client, seconds) {
  return new Promise((resolve, reject) => {
    client.waitForReady(deadline(seconds).deadline, (err) => (err
      ? reject(new Error(`no policy server reachable at ${client.getChannel().getTarget()} within ${seconds}s`))
      : resolve()));
  });
}

// Runs one episode: the policy answers every time step over the stream.
async function runEpisode(stream, policy, obsDtype, seed) {
  const env = new CartPole(seed);
  const episode = { observations: [], actions: [], versions: [], return: 0, fell: false };
  let observation = env.reset();
  let stepType = FIRST;
  let reward = 0;
  for (;;) {
    const request = tensors.actionRequest(policy, [observation], obsDtype,
      { stepTypes: [stepType], rewards: [reward], discounts: [1], batched: false });
    const response = await stream.send(request);
    if (response.error) throw new Error(`ActionStream answered an error: ${response.error.message}`);
    const [action] = tensors.actionValues(response);
    episode.observations.push(observation);
    episode.actions.push(action);
    episode.versions.push(response.version);
    const result = env.step(action);
    episode.return += result.reward;
    if (result.done) {
      episode.fell = result.fell;
      return episode;
    }
    [observation, stepType, reward] = [result.observation, MID, result.reward];
  }
}

// A request the server must refuse: an observation one element short.
function wrongRequest(policy, obsDtype) {
  return tensors.actionRequest(policy, [[0, 0, 0]], obsDtype,
    { stepTypes: [LAST], rewards: [0], discounts: [0], batched: false });
}

async function run(args, { PolicyService, root }, out) {
  const client = new PolicyService(args.address, grpc.credentials.createInsecure());
  try {
    await waitForReady(client, args.timeout);
    const { policies } = await unary(client, 'ListPolicies', {}, args.timeout);
    out.policies(policies);
    const { specs, version, policy } = await unary(client, 'GetSpecs', { policy: args.policy }, args.timeout);
    out.specs(policy, version, specs);
    if (policies.some((p) => p.name === policy && p.stateful)) {
      throw new Error(`policy '${policy}' is stateful: this example sends no policy state`);
    }
    const obsDtype = tensors.vectorObservationSpec(specs, 4).dtype;

    const stream = new ActionStream(client, args.timeout);
    try {
      out.episode(await runEpisode(stream, policy, obsDtype, args.seed));
      const streamAnswer = await stream.send(wrongRequest(policy, obsDtype));
      if (!streamAnswer.error) throw new Error('ActionStream accepted an observation of the wrong shape');
      out.streamError(protos.readStatus(root, streamAnswer.error));
      await stream.close();
    } finally {
      stream.cancelUnlessClosed();
    }

    const observations = new CartPole(args.seed + 1).randomObservations(args.batch);
    const batchRequest = tensors.actionRequest(policy, observations, obsDtype, {
      stepTypes: observations.map(() => MID), rewards: observations.map(() => 1), discounts: observations.map(() => 1),
      batched: true,
    });
    const batchAnswer = await unary(client, 'Action', batchRequest, args.timeout);
    out.batch({ observations, actions: tensors.actionValues(batchAnswer), version: batchAnswer.version });

    try {
      await unary(client, 'Action', wrongRequest(policy, obsDtype), args.timeout);
    } catch (err) {
      if (err.code === undefined) throw err;
      out.callError(protos.readCallError(root, err));
      return;
    }
    throw new Error('Action accepted an observation of the wrong shape');
  } finally {
    client.close();
  }
}

// Prints what happens as text.
function textOutput(address) {
  const print = (...lines) => lines.forEach((line) => console.log(line));
  return {
    policies: (policies) => print(`policies at ${address}:`, ...policies.map((p) => `  ${p.name}: version `
      + `${p.version}, backend ${p.backend}, ${p.stateful ? 'stateful' : 'stateless'}`)),
    specs: (policy, version, specs) => print(`specs of '${policy}' (version ${version}):`,
      '  time_step_spec:', ...['step_type', 'reward', 'discount', 'observation'].flatMap(
        (f) => [`    ${f}:`, ...tensors.describeSpecs(specs.time_step_spec[f], '      ')]),
      '  action_spec:', ...tensors.describeSpecs(specs.action_spec, '    '),
      '  policy_state_spec:', ...tensors.describeSpecs(specs.policy_state_spec, '    '),
      '  info_spec:', ...tensors.describeSpecs(specs.info_spec, '    ')),
    episode: (e) => print(`episode over ActionStream: ${e.actions.length} steps, return ${e.return.toFixed(1)} `
      + `(${e.fell ? 'the pole fell' : 'time limit'}), versions ${Math.min(...e.versions)}..`
      + `${Math.max(...e.versions)}`, `  actions: ${e.actions.join(' ')}`),
    streamError: (error) => print('a wrong request on the stream (observation of shape (3,)) is answered '
      + 'with ActionResponse.error:', ...protos.formatError(error).map((l) => `  ${l}`)),
    batch: (b) => print(`unary Action with a batch of ${b.actions.length}: actions [${b.actions.join(', ')}] `
      + `(version ${b.version})`),
    callError: (error) => print('a wrong unary Action (observation of shape (3,)) fails with '
      + 'grpc-status-details-bin:', ...protos.formatError(error).map((l) => `  ${l}`)),
  };
}

// Collects everything into one JSON document, printed at the end.
function jsonOutput(doc) {
  return {
    policies: (policies) => { doc.policies = policies; },
    specs: (policy, version) => Object.assign(doc, { policy, version }),
    episode: (episode) => { doc.episode = episode; },
    streamError: (error) => { doc.stream_error = error; },
    batch: (batch) => { doc.batch = batch; },
    callError: (error) => { doc.call_error = error; },
  };
}

async function main(argv) {
  let args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(err.message ? `${USAGE}\n\nerror: ${err.message}` : USAGE);
    return err.message ? 2 : 0;
  }
  const doc = {};
  let loaded;
  try {
    loaded = protos.load(args.protos);
    await run(args, loaded, args.json ? jsonOutput(doc) : textOutput(args.address));
  } catch (err) {
    const grpcError = loaded && err.code !== undefined && err.metadata !== undefined;
    const lines = grpcError ? protos.formatError(protos.readCallError(loaded.root, err)) : [err.message];
    console.error(`error: ${lines.join('\n')}`);
    return 1;
  }
  if (args.json) console.log(JSON.stringify(doc));
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
