"""Throwaway Redis servers for the tests of the Redis state backend: a single
server (TCP on a free loopback port, AOF optional) or a 3-master cluster, in
the test's temporary directory, stopped at exit.  Tests skip (exit 77) when
redis-server is not installed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time


def need_redis() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        print("SKIP: redis-server/redis-cli are not installed (Debian redis-server, "
              "redis-tools)", flush=True)
        sys.exit(77)


def free_port() -> int:
    """A free loopback port at most 55535 (a cluster node also listens on
    port + 10000)."""
    import random
    while True:
        port = random.randint(20000, 55535)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s2 = socket.socket()
            s2.bind(("127.0.0.1", port + 10000))
            s2.close()
            return port
        except OSError:
            continue
        finally:
            s.close()


class Redis:
    """One redis-server; restartable on the same port and data directory."""

    def __init__(self, t, name: str = "redis", aof: bool = False, cluster: bool = False,
                 password: str | None = None, port: int | None = None) -> None:
        self.t = t
        self.dir = os.path.join(t.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.aof = aof
        self.cluster = cluster
        self.password = password
        self.proc = None
        t.on_exit(self.stop)
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log"),
                "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file",
                     os.path.join(self.dir, "nodes.conf"), "--cluster-node-timeout", "2000"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.cli("PING").strip() in ("PONG", "NOAUTH Authentication required.") or \
                    "NOAUTH" in self.cli("PING"):
                return
            time.sleep(0.05)
        self.t.require(False, f"redis-server starts on port {self.port}")

    def cli(self, *args: str) -> str:
        argv = ["redis-cli", "-p", str(self.port)]
        if self.password:
            argv += ["--no-auth-warning", "-a", self.password]
        r = subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10)
        return r.stdout.decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """Three masters, no replicas, made into a cluster by redis-cli."""

    def __init__(self, t) -> None:
        self.nodes = [Redis(t, name=f"node{i}", cluster=True) for i in range(3)]
        r = subprocess.run(["redis-cli", "--cluster", "create", "--cluster-yes"] +
                           [f"127.0.0.1:{n.port}" for n in self.nodes],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        t.require(r.returncode == 0, "redis-cli --cluster create makes a 3-master cluster",
                  r.stdout.decode()[-2000:])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                break
            time.sleep(0.1)
        t.require(all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes),
                  "the cluster is ok")

    @property
    def url(self) -> str:
        return self.nodes[0].url
