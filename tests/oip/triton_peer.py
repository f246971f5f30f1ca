"""A tritonclient peer for the OIP tests: JSON commands on stdin, one JSON answer per line on stdout.

Runs under .venv-triton (tritonclient[grpc] from PyPI, `make triton-client`),
never with the project's packages: the server sees a client nobody here
wrote. Commands (one JSON object per line):

- {"op": "probe", "model": M}: server_live, server_ready, model_ready, server_metadata;
- {"op": "metadata", "model": M}: get_model_metadata's inputs, outputs, versions;
- {"op": "infer", "model": M, "inputs": {NAME: {"datatype": D, "shape": [...], "data": [...]}},
   "outputs": [NAME...] | null, "sequence_id": ID | 0, "start": bool, "end": bool, "stream": bool}:
   client.infer (unary ModelInfer) or async_stream_infer (ModelStreamInfer) with Triton's sequence flags;
   answers {"outputs": {NAME: nested list}, "datatypes": {NAME: D}, "version": V, "id": ID} or
   {"error": message, "status": status};
- {"op": "quit"}.
"""

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException, triton_to_np_dtype


class Peer:
    def __init__(self, url: str):
        self.client = triton.InferenceServerClient(url)
        self.answers: queue.Queue = queue.Queue()
        self.streaming = False

    def probe(self, cmd):
        meta = self.client.get_server_metadata(as_json=True)
        return {"live": self.client.is_server_live(), "ready": self.client.is_server_ready(),
                "model_ready": self.client.is_model_ready(cmd["model"]), "server": meta}

    def metadata(self, cmd):
        meta = self.client.get_model_metadata(cmd["model"], as_json=True)
        return {"name": meta["name"], "versions": meta.get("versions", []), "platform": meta.get("platform"),
                "inputs": meta.get("inputs", []), "outputs": meta.get("outputs", [])}

    def infer(self, cmd):
        inputs = []
        for name, tensor in cmd["inputs"].items():
            data = np.asarray(tensor["data"], dtype=triton_to_np_dtype(tensor["datatype"])).reshape(tensor["shape"])
            infer_input = triton.InferInput(name, list(data.shape), tensor["datatype"])
            infer_input.set_data_from_numpy(data)
            inputs.append(infer_input)
        outputs = [triton.InferRequestedOutput(n) for n in cmd["outputs"]] if cmd.get("outputs") else None
        args = dict(model_name=cmd["model"], inputs=inputs, outputs=outputs, request_id=cmd.get("id", ""),
                    sequence_id=cmd.get("sequence_id", 0), sequence_start=cmd.get("start", False),
                    sequence_end=cmd.get("end", False))
        if not cmd.get("stream"):
            return self._result(self.client.infer(**args))
        if not self.streaming:
            self.client.start_stream(callback=lambda result, error: self.answers.put((result, error)))
            self.streaming = True
        self.client.async_stream_infer(**args)
        result, error = self.answers.get(timeout=30)
        if error is not None:
            raise error
        return self._result(result)

    @staticmethod
    def _result(result):
        response = result.get_response()
        outputs = {o.name: result.as_numpy(o.name).tolist() for o in response.outputs}
        return {"outputs": outputs, "datatypes": {o.name: o.datatype for o in response.outputs},
                "version": response.model_version, "id": response.id}

    def close(self):
        if self.streaming:
            self.client.stop_stream()
        self.client.close()


def main() -> None:
    peer = Peer(sys.argv[1])
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["op"] == "quit":
                break
            try:
                answer = getattr(peer, cmd["op"])(cmd)
            except InferenceServerException as e:
                answer = {"error": e.message(), "status": e.status()}
            print(json.dumps(answer), flush=True)
    finally:
        peer.close()


if __name__ == "__main__":
    main()
