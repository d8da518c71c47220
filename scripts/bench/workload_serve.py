"""The worker side of `workloads.py`'s protocol, shared by `workloads_torch.py` and
`workloads_jax.py` (standard library only: the two virtualenvs differ).

A worker builds its workloads (name -> a function running one step and returning something
to wait on, or None), runs `warmup` untimed steps of each, prints `{"ready": [names]}`, then
answers each stdin line `run NAME SAMPLES STEPS` with `{"name", "samples_s"}`: the seconds
per step of each sample of STEPS consecutive steps (monotonic clock; `block` is called on the
last step's result before the clock stops, for JAX's asynchronous dispatch).
"""

import json
import sys
import time


def serve(workloads, warmup, block=lambda result: None):
    for step in workloads.values():
        result = None
        for _ in range(warmup):
            result = step()
        block(result)
    print(json.dumps({"ready": list(workloads)}), flush=True)
    for line in sys.stdin:
        _, name, samples, steps = line.split()
        step, times = workloads[name], []
        for _ in range(int(samples)):
            start = time.perf_counter()
            result = None
            for _ in range(int(steps)):
                result = step()
            block(result)
            times.append((time.perf_counter() - start) / int(steps))
        print(json.dumps({"name": name, "samples_s": times}), flush=True)
