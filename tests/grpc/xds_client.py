"""A proxyless gRPC client: resolves an xds:/// target through the xDS server named in
$GRPC_XDS_BOOTSTRAP and calls /echo.Echo/Say. Prints the reply; exit 1 on failure.
"""
import sys

import grpc


def main() -> int:
    target, message = sys.argv[1], sys.argv[2].encode()
    with grpc.insecure_channel(target) as channel:
        say = channel.unary_unary("/echo.Echo/Say")
        try:
            reply = say(message, timeout=10, wait_for_ready=True)
        except grpc.RpcError as e:
            print(f"error: {e.code()}: {e.details()}", flush=True)
            return 1
    print(reply.decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
