"""A gRPC server with the standard health service (grpcio-health-checking), for wait-for's
grpc:// targets (tests/it/wait_for_protocols.rs, bench/wait-for): the server as a whole SERVING, service "db" NOT_SERVING until the file given
by --db-ready exists. Prints its port on stdout, then serves until killed."""
import argparse
import os
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

parser = argparse.ArgumentParser()
parser.add_argument("--db-ready", required=True)
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
port = server.add_insecure_port(f"127.0.0.1:{args.port}")
server.start()
print(port, flush=True)


def watch():
    while not os.path.exists(args.db_ready):
        time.sleep(0.005)
    servicer.set("db", health_pb2.HealthCheckResponse.SERVING)


threading.Thread(target=watch, daemon=True).start()
server.wait_for_termination()
