# Opens N TCP connections at once, holds them all open, sends each its own bytes and checks each echo; exit 0 if all did.
import asyncio
import resource
import sys

resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


async def one(i, opened, go):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 60)
    opened.append(i)
    await go.wait()  # every connection is open at the same time before any talks
    msg = f"flow {i} ".encode() * 100
    writer.write(msg)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(msg)), 60)
    writer.close()
    return got == msg


async def main():
    opened, go = [], asyncio.Event()
    tasks = [asyncio.create_task(one(i, opened, go)) for i in range(n)]
    while len(opened) < n and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    print(f"{len(opened)} connections open at once", flush=True)
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    good = sum(1 for r in results if r is True)
    print(f"{good}/{n} echoed", flush=True)
    return 0 if good == n else 1


sys.exit(asyncio.run(main()))
