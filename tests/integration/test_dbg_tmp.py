import time, anyio, pytest
from tests.integration.test_prometheus_server import *
@pytest.mark.anyio
async def test_dbg(start_prometheus):
    port = free_port()
    prometheus = await anyio.to_thread.run_sync(start_prometheus, [f"127.0.0.1:{port}"])
    sink = PrometheusSink(address=f"127.0.0.1:{port}")
    async with open_simulator(SIMULATOR) as sim:
        client = make_client(api_key="test", base_url=sim.base_url)
        async with client, Pipeline(client, stages=STAGES, sinks=[SinkSpec(sink)]) as pipeline:
            t=time.monotonic()
            results = []
            async def one(n):
                results.append(await pipeline.run(request(n)))
            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(one, n)
                await anyio.sleep(0.5)
                print("mid", [l for l in (await get(f"http://127.0.0.1:{port}/metrics")).splitlines() if "in_progress" in l])
            print("run took", time.monotonic()-t, [r.latency.end_to_end for r in results])
            await anyio.sleep(3)
            print(await get(f"{prometheus.url}/api/v1/query?query=rillet_streams_in_progress%5B1m%5D"))
