"""Side-by-side measurement for bench/wait-for (see there). Standard library only.

Latency: a waiter is started, the target is made ready at a random moment 0.3-1.3 s later
(timestamp t0, taken right after the listener/file/queue exists), and the waiter's exit is
timestamped by a thread blocked in waitpid (t1). Tools run alternately, trial by trial, so
machine noise hits all of them alike. CPU: each waiter waits on a target that never gets
ready for CPU_SECONDS; user+system time of the child is read from getrusage.
"""

import ctypes
import ctypes.util
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PODINIT, TRIALS, CPU_SECONDS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
REDIS_SERVER, REDIS_CLI = shutil.which("redis-server"), shutil.which("redis-cli")
GRPC_PYTHON = os.path.join(os.environ.get("PODINIT_CACHE", "/var/cache/podinit"), "grpc/bin/python3")
GRPC_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests/it/support/grpc_health_server.py")
BUSYBOX = "/bin/busybox"
WAIT_FOR_IT = shutil.which("wait-for-it")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tcp_waiters(port):
    return {
        "podinit": [PODINIT, "wait-for", f"tcp://127.0.0.1:{port}"],
        "wait-for-it": [WAIT_FOR_IT, "-q", "-t", "0", f"127.0.0.1:{port}"],
        # Debian's busybox nc has no -z (the idiom `until nc -z` then loops forever);
        # `-e /bin/true` is the working equivalent: connect, run true, exit 0.
        "busybox nc loop": [BUSYBOX, "sh", "-c", f"until {BUSYBOX} nc -w 1 127.0.0.1 {port} -e /bin/true 2>/dev/null; do sleep 1; done"],
    }


def file_waiters(path):
    return {
        "podinit": [PODINIT, "wait-for", f"file://{path}"],
        "busybox test loop": [BUSYBOX, "sh", "-c", f"until [ -e {path} ]; do sleep 1; done"],
    }


def unix_waiters(path):
    return {"podinit": [PODINIT, "wait-for", f"unix://{path}"]}


def mq_waiters(name):
    return {"podinit": [PODINIT, "wait-for", f"posix-mq:///{name}"]}


def sysv_waiters(key):
    return {"podinit": [PODINIT, "wait-for", f"sysv-msg://{key:#x}"]}


def redis_waiters(port, query=""):
    url = f"redis://:bench-pw@127.0.0.1:{port}{query}"
    # What charts paste: a redis-cli loop in the Redis image.
    check = f"{REDIS_CLI} -h 127.0.0.1 -p {port} --no-auth-warning -a bench-pw ping 2>/dev/null | grep -q PONG"
    if query:
        check = f"{REDIS_CLI} -h 127.0.0.1 -p {port} --no-auth-warning -a bench-pw role 2>/dev/null | head -1 | grep -q slave"
    return {"podinit": [PODINIT, "wait-for", url], "redis-cli loop": ["/bin/sh", "-c", f"until {check}; do sleep 1; done"]}


def wait_accepting(port, proc, limit=10):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server on {port} exited")
            time.sleep(0.001)
    raise RuntimeError(f"nothing accepted on {port}")


def start_redis(port):
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", "bench-pw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_accepting(port, proc)
    return proc


def stop(proc):
    proc.kill()
    proc.wait()


def start_grpc(port, ready_file):
    proc = subprocess.Popen([GRPC_PYTHON, GRPC_SERVER, "--db-ready", ready_file, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()  # the port, once serving
    return proc


LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
if not hasattr(LIBC, "mq_open"):  # glibc < 2.34 keeps the mq_* calls in librt
    LIBC = ctypes.CDLL(ctypes.util.find_library("rt"), use_errno=True)
LIBC.mq_open.restype = ctypes.c_int
LIBC.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
IPC_CREAT, IPC_RMID = 0o1000, 0


def run_once(argv, make_ready, cleanup):
    done = {}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def reap():
        proc.wait()
        done["t1"] = time.monotonic()

    watcher = threading.Thread(target=reap)
    watcher.start()
    time.sleep(random.uniform(0.3, 1.3))
    handle = make_ready()
    t0 = time.monotonic()
    watcher.join(timeout=10)
    if "t1" not in done:
        proc.kill()
        watcher.join()
        cleanup(handle)
        return None
    cleanup(handle)
    return (done["t1"] - t0) * 1000


def listen_tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s


def latency_case(name, make_waiters, make_ready, cleanup):
    results = {}
    for _ in range(TRIALS):
        key = make_waiters()
        for tool, argv in key["waiters"].items():
            ms = run_once(argv, lambda: make_ready(key), cleanup)
            results.setdefault(tool, []).append(ms)
    return name, results


def cpu_case(waiters):
    out = {}
    for tool, argv in waiters.items():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(CPU_SECONDS)
        proc.terminate()
        proc.wait()
        # busybox's loop spawns nc/sleep children; their time lands in RUSAGE_CHILDREN once
        # reaped by the shell, which happens during the run.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        out[tool] = 100 * cpu / CPU_SECONDS
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="podinit-bench-")
    cases = []

    def tcp_keys():
        port = free_port()
        return {"port": port, "waiters": tcp_waiters(port)}

    cases.append(latency_case("tcp", tcp_keys, lambda k: listen_tcp(k["port"]), lambda s: s.close()))

    counter = [0]

    def file_keys():
        counter[0] += 1
        path = os.path.join(tmp, f"ready-{counter[0]}")
        return {"path": path, "waiters": file_waiters(path)}

    def touch(k):
        open(k["path"], "w").close()
        return k["path"]

    def rm(path):
        os.unlink(path)

    # The same file must not exist for the next tool: recreate the key per tool.
    file_results = {}
    for _ in range(TRIALS):
        for tool in ("podinit", "busybox test loop"):
            k = file_keys()
            ms = run_once(k["waiters"][tool], lambda: touch(k), rm)
            file_results.setdefault(tool, []).append(ms)
    cases.append(("file", file_results))

    unix_results = {}
    for i in range(TRIALS):
        path = os.path.join(tmp, f"s{i}.sock")

        def listen_unix(path=path):
            s = socket.socket(socket.AF_UNIX)
            s.bind(path)
            s.listen(4)
            return s

        def close_unix(s, path=path):
            s.close()
            os.unlink(path)

        unix_results.setdefault("podinit", []).append(run_once(unix_waiters(path)["podinit"], listen_unix, close_unix))
    cases.append(("unix socket", unix_results))

    # IPC objects are made with the syscalls themselves (ctypes), so no /dev/mqueue mount is
    # needed and the rows cannot be silently skipped.
    mq_results = {}
    for i in range(TRIALS):
        name = f"podinit-bench-{os.getpid()}-{i}"

        def make_mq(name=name):
            fd = LIBC.mq_open(f"/{name}".encode(), os.O_CREAT | os.O_RDWR, 0o600, None)
            if fd < 0:
                raise OSError(ctypes.get_errno(), f"mq_open /{name}")
            LIBC.mq_close(fd)
            return name

        def rm_mq(name):
            LIBC.mq_unlink(f"/{name}".encode())

        mq_results.setdefault("podinit", []).append(run_once(mq_waiters(name)["podinit"], make_mq, rm_mq))
    cases.append(("POSIX message queue", mq_results))

    sysv_results = {}
    for i in range(TRIALS):
        key = 0x50440000 + (os.getpid() & 0xFFF) * 64 + i

        def make_msg(key=key):
            qid = LIBC.msgget(key, IPC_CREAT | 0o600)
            if qid < 0:
                raise OSError(ctypes.get_errno(), f"msgget {key:#x}")
            return qid

        def rm_msg(qid):
            LIBC.msgctl(qid, IPC_RMID, None)

        sysv_results.setdefault("podinit", []).append(run_once(sysv_waiters(key)["podinit"], make_msg, rm_msg))
    cases.append(("SysV message queue", sysv_results))

    # Redis: the server starts (t0 once it accepts); podinit's AUTH + PING against a
    # redis-cli ping loop.
    redis_results = {}
    for _ in range(TRIALS):
        port = free_port()
        for tool, argv in redis_waiters(port).items():
            redis_results.setdefault(tool, []).append(run_once(argv, lambda port=port: start_redis(port), stop))
    cases.append(("redis (AUTH, PING)", redis_results))

    # gRPC health: the server starts (t0 once it serves). No grpc_health_probe is installable
    # here, so podinit alone.
    grpc_results = {}
    if os.path.exists(GRPC_PYTHON):
        for i in range(TRIALS):
            port = free_port()
            ready = os.path.join(tmp, f"grpc-{i}")
            argv = [PODINIT, "wait-for", f"grpc://127.0.0.1:{port}"]
            grpc_results.setdefault("podinit", []).append(run_once(argv, lambda port=port, ready=ready: start_grpc(port, ready), stop))
        cases.append(("gRPC health", grpc_results))

    print(f"## wait-for: reaction latency (target ready → waiter exits), {TRIALS} trials each\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}.\n")
    print("| target | tool | median ms | min ms | max ms | timeouts | podinit / tool (median) |")
    print("|---|---|---|---|---|---|---|")
    for name, results in cases:
        pod = [x for x in results.get("podinit", []) if x is not None]
        pod_med = statistics.median(pod) if pod else float("nan")
        for tool, values in results.items():
            ok = [x for x in values if x is not None]
            med = statistics.median(ok) if ok else float("nan")
            ratio = f"{pod_med / med:.3f}" if ok and med > 0 else "-"
            if not ok:
                print(f"| {name} | {tool} | - | - | - | {len(values)} | - |")
                continue
            print(f"| {name} | {tool} | {med:.1f} | {min(ok):.1f} | {max(ok):.1f} | {len(values) - len(ok)} | {ratio} |")

    port = free_port()
    cpu = cpu_case(tcp_waiters(port))
    print(f"\n## wait-for: CPU while waiting {CPU_SECONDS:.0f} s on a closed TCP port\n")
    print("| tool | CPU % of one core | podinit / tool |")
    print("|---|---|---|")
    for tool, pct in cpu.items():
        ratio = f"{cpu['podinit'] / pct:.2f}" if pct > 0 else "-"
        print(f"| {tool} | {pct:.3f} | {ratio} |")
    # CPU while a Redis answers but is not ready (a master where a replica is wanted): every
    # check is a full AUTH + PING + ROLE.
    port = free_port()
    server = start_redis(port)
    cpu = cpu_case(redis_waiters(port, "?role=replica"))
    stop(server)
    print(f"\n## wait-for: CPU while waiting {CPU_SECONDS:.0f} s on a Redis that answers but is not ready (role=replica on a master)\n")
    print("| tool | CPU % of one core | podinit / tool |")
    print("|---|---|---|")
    for tool, pct in cpu.items():
        ratio = f"{cpu['podinit'] / pct:.2f}" if pct > 0 else "-"
        print(f"| {tool} | {pct:.3f} | {ratio} |")
    shutil.rmtree(tmp, ignore_errors=True)


main()
