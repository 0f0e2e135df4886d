# An asyncio TCP echo server for the 1,000-flow test: echoes every byte until the client closes.
import asyncio
import resource
import sys

resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(echo, sys.argv[1], int(sys.argv[2]), backlog=4096)
    async with server:
        await server.serve_forever()


asyncio.run(main())
