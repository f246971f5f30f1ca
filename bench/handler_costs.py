"""Server CPU per message of gRPC handler designs under the same client load (profiling aid).

Usage: python -m bench.handler_costs ACTORS VARIANT... with VARIANT among
echo (bytes back), parse (protos both ways), task (a task and a queue per
request, as a stream handler needs), batch (futures answered by a batch loop),
hop (the same with a thread hop per batch). Each runs 4 s on 127.0.0.1.
"""
import asyncio, collections, concurrent.futures, multiprocessing as mp, os, sys, time
import grpc

METHOD = "/tfa_policy_grpc.v1.PolicyService/ActionStream"

def make_payloads():
    import numpy as np
    from policy_client.wire import steps, nests
    from policy_client.wire.standins import TimeStep, PolicyStep
    from policy_client.wire.generated import policy_service_pb2 as pb
    r = pb.ActionRequest(policy="cartpole", request_id=1)
    steps.write_time_step(r.time_step, TimeStep(np.array(0, np.int32), np.array(0, np.float32), np.array(1, np.float32), np.zeros(4, np.float32)))
    nests.write_nest(r.policy_state, ())
    resp = pb.ActionResponse(request_id=1, version=3)
    steps.write_policy_step(resp.policy_step, PolicyStep(np.int64(1), (), ()))
    return r.SerializeToString(), resp.SerializeToString()

async def serve(variant, port_q, stop_evt):
    from policy_client.wire.generated import policy_service_pb2 as pb
    req_bytes, resp_bytes = make_payloads()
    resp_msg = pb.ActionResponse.FromString(resp_bytes)
    executor = concurrent.futures.ThreadPoolExecutor(1)
    pending = collections.deque(); wake = asyncio.Event()

    async def batch_loop(hop):
        loop = asyncio.get_running_loop()
        while True:
            while not pending:
                wake.clear(); await wake.wait()
            batch = list(pending); pending.clear()
            if hop:
                await loop.run_in_executor(executor, lambda: None)
            for f in batch:
                if not f.done(): f.set_result(resp_msg)

    async def handler(it, ctx):
        if variant == "echo":
            async for req in it:
                yield resp_bytes
            return
        if variant == "parse":
            async for req in it:
                pb.ActionRequest.FromString(req)
                yield resp_msg.SerializeToString()
            return
        answers = asyncio.Queue()
        loop = asyncio.get_running_loop()
        async def one(req):
            pb.ActionRequest.FromString(req)
            if variant == "task":
                return resp_msg
            f = loop.create_future(); pending.append(f); wake.set()
            return await f
        async def read():
            async for req in it:
                answers.put_nowait(asyncio.ensure_future(one(req)))
            answers.put_nowait(None)
        reader = asyncio.ensure_future(read())
        while (a := await answers.get()) is not None:
            yield (await a).SerializeToString()
        await reader

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("tfa_policy_grpc.v1.PolicyService", {
        "ActionStream": grpc.stream_stream_rpc_method_handler(handler)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    if variant in ("batch", "hop"):
        asyncio.ensure_future(batch_loop(variant == "hop"))
    port_q.put(port)
    while not stop_evt.is_set():
        await asyncio.sleep(0.1)
    await server.stop(0)

def server_main(variant, port_q, stop_evt):
    asyncio.run(serve(variant, port_q, stop_evt))

def client(port, seconds, q):
    req, _ = make_payloads()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    import queue as Q
    reqs = Q.SimpleQueue()
    call = ch.stream_stream(METHOD)(iter(reqs.get, None))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        reqs.put(req); next(call)
    n = 0; c = time.process_time(); end = time.monotonic() + seconds
    while time.monotonic() < end:
        reqs.put(req); next(call); n += 1
    q.put((n, time.process_time() - c)); reqs.put(None)

def cpu(pid):
    parts = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    actors = int(sys.argv[1]); secs = 4
    for variant in sys.argv[2:]:
        pq, q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        sp = ctx.Process(target=server_main, args=(variant, pq, stop)); sp.start()
        port = pq.get(timeout=30)
        cs = [ctx.Process(target=client, args=(port, secs, q)) for _ in range(actors)]
        for c in cs: c.start()
        time.sleep(1.2); s0 = cpu(sp.pid); t0 = time.monotonic()
        res = [q.get(timeout=60) for _ in cs]
        s1 = cpu(sp.pid)
        n = sum(r[0] for r in res)
        print(f"{variant:6s} actors={actors:2d} msgs/s={n/secs:7.0f} server_us={((s1-s0)/n)*1e6:6.1f} client_us={sum(r[1] for r in res)/n*1e6:6.1f}", flush=True)
        stop.set(); sp.join(10)
        for c in cs: c.join(5)
