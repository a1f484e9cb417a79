"""A gRPC backend for tests: /echo.Echo/Say answers "<name>: <request bytes>".

No .proto needed: the handler works on raw bytes. Prints "port <n>" once listening.
"""
import sys
from concurrent import futures

import grpc


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "echo"

    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        return name.encode() + b": " + request

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
