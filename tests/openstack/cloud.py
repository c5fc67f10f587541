#!/usr/bin/env python3
"""A small, REAL OpenStack cloud on 127.0.0.1 for the netfix-openstack integration tests.

Runs Keystone 30.0.0 and Neutron 29.0.0 from the venvs that tests/openstack/setup.sh caches (PyPI packages, no
hand-written fakes), each behind a single-threaded WSGI server (one request at a time: SQLite cannot take concurrent
writes), bound to 127.0.0.1 only. Neutron authenticates every request against the Keystone
(`auth_strategy = keystone`, keystonemiddleware).

    python3 tests/openstack/cloud.py template        # build the cached template (setup.sh runs it)
    python3 tests/openstack/cloud.py up --state DIR  # run a cloud from the template until stdin closes

The template (built once per content of this file, in the cache directory, under a lock) holds the bootstrapped
Keystone (admin; member user `kpaas` in project `kpaas-mesh`; project `other` where `kpaas` has no role; the
`network` service with public/internal/admin endpoints in RegionOne; an application credential of `kpaas`) and the
Neutron "cloud" (external network `public` 203.0.113.0/24 made by admin; as `kpaas`: one node network per cluster
whose allocation pool leaves .200 and up to MetalLB, a router with its gateway on `public` and an interface on every
node subnet, and one port per node with a fixed IP and a fake Nova server UUID as device_id, as if Nova servers
existed). `up` copies it into DIR, starts both servers on free ports, points the catalog at them, writes
DIR/cloud.json (URLs, users, passwords, IDs: test fixtures only), prints `READY DIR/cloud.json` and waits. It stops
both servers and exits when its standard input closes (the test dropped its guard, or the test process ended in any
way) or on SIGTERM/SIGINT, so no process is left behind; the servers also exit when their own standard input closes.

Internal subcommands: `serve-keystone`, `serve-neutron`, `neutron-schema` (run inside the matching venv).
"""

import argparse
import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

NEUTRON_VERSION = "29.0.0"
KEYSTONE_VERSION = "30.0.0"
ADMIN_PASSWORD = "admin-secret-Pw1"
MEMBER_USER = "kpaas"
MEMBER_PASSWORD = "member-secret-Pw2"
PROJECT = "kpaas-mesh"
OTHER_PROJECT = "other"
REGION = "RegionOne"
# cluster name -> (node CIDR, node IPs); the MetalLB gateway IPs the tests use are .200 of each CIDR.
CLUSTERS = {
    "cluster1": ("172.21.0.0/24", ["172.21.0.11", "172.21.0.12", "172.21.0.13"]),
    "cluster2": ("172.22.0.0/24", ["172.22.0.11", "172.22.0.12"]),
    "cluster3": ("172.23.0.0/24", ["172.23.0.11"]),
}


def cache_dir():
    return os.environ.get("KPAAS_MESH_OPENSTACK_CACHE", os.path.expanduser("~/.cache/kpaas-mesh-openstack"))


def venv(name, version):
    return os.path.join(cache_dir(), f"{name}-{version}")


def log(msg):
    print(f"[cloud {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- servers (in venvs)


def exit_when_stdin_closes():
    """Ends this process when the parent's pipe closes (the parent died or is stopping us)."""

    def watch():
        try:
            while sys.stdin.buffer.read(1):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(app, port, logfile):
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, fmt, *args):
            with open(logfile, "a") as f:
                f.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    lock = threading.Lock()

    def locked(environ, start_response):
        with lock:  # one request at a time (SQLite); wsgiref is single-threaded anyway
            return list(app(environ, start_response))

    httpd = make_server("127.0.0.1", port, locked, server_class=WSGIServer, handler_class=QuietHandler)
    print("serving", flush=True)
    httpd.serve_forever()


def cmd_serve_keystone(a):
    exit_when_stdin_closes()
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = a.config
    sys.argv = [sys.argv[0]]  # keystone's WSGI app parses the command line as its own
    from keystone.wsgi.api import application

    serve(application, a.port, a.log)


def cmd_serve_neutron(a):
    exit_when_stdin_closes()
    sys.argv = [sys.argv[0], "--config-file", a.config, "--config-file", a.ml2]
    from neutron.wsgi.api import application

    serve(application, a.port, a.log)


def cmd_neutron_schema(a):
    import sqlalchemy

    from neutron.db.migration.models import head  # noqa: F401  (registers every model)
    from neutron_lib.db import model_base

    engine = sqlalchemy.create_engine(a.url)
    model_base.BASEV2.metadata.create_all(engine)


# --------------------------------------------------------------------------------------------- supervisor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, token=None, ok=(200, 201, 202, 204)):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, r.headers, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        if e.code in ok:
            return e.code, e.headers, (json.loads(raw) if raw else None)
        raise RuntimeError(f"{method} {url}: HTTP {e.code}: {raw[:400]!r}") from None


def wait_http(url, proc, name, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see its log in the state directory")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout}s")


def token(ks, user, password, project, domain="Default"):
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": domain}, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": {"name": domain}}},
        }
    }
    _, headers, b = http("POST", f"{ks}/v3/auth/tokens", body)
    return headers["X-Subject-Token"], b["token"]


class Cloud:
    """The servers and configuration of one state directory."""

    def __init__(self, state):
        self.state = os.path.abspath(state)
        self.procs = []
        os.makedirs(os.path.join(self.state, "logs"), exist_ok=True)
        self.kdir = os.path.join(self.state, "keystone")
        self.ndir = os.path.join(self.state, "neutron")

    def spawn(self, name, argv, env=None):
        logf = open(os.path.join(self.state, "logs", f"{name}.log"), "a")
        p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=logf, stderr=logf, env=env, cwd=self.state, start_new_session=True
        )
        self.procs.append((name, p))
        return p

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.stdin.close()
                except Exception:
                    pass
                p.terminate()
        for name, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    # -- Keystone
    def keystone_conf(self, port):
        self.ks_port = port
        self.ks = f"http://127.0.0.1:{port}"
        d = self.kdir
        for sub in ("fernet-keys", "credential-keys"):
            os.makedirs(os.path.join(d, sub), mode=0o700, exist_ok=True)
        self.kconf = os.path.join(d, "keystone.conf")
        with open(self.kconf, "w") as f:
            f.write(
                f"""[DEFAULT]
log_file = {self.state}/logs/keystone-app.log
[database]
connection = sqlite:///{d}/keystone.db
[identity]
password_hash_rounds = 4
[token]
provider = fernet
[fernet_tokens]
key_repository = {d}/fernet-keys
[credential]
key_repository = {d}/credential-keys
[cache]
enabled = false
"""
            )

    def keystone_bootstrap(self):
        manage = os.path.join(venv("keystone", KEYSTONE_VERSION), "bin", "keystone-manage")
        logf = os.path.join(self.state, "logs", "keystone-manage.log")
        user = "root" if os.geteuid() == 0 else str(os.getuid())
        group = "root" if os.geteuid() == 0 else str(os.getgid())
        url = f"{self.ks}/v3"
        for args in (
            ["db_sync"],
            ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
            ["credential_setup", "--keystone-user", user, "--keystone-group", group],
            ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-admin-url", url,
             "--bootstrap-internal-url", url, "--bootstrap-public-url", url, "--bootstrap-region-id", REGION],
        ):
            with open(logf, "a") as lf:
                subprocess.run([manage, "--config-file", self.kconf] + args, check=True, stdout=lf, stderr=lf)

    def start_keystone(self):
        py = os.path.join(venv("keystone", KEYSTONE_VERSION), "bin", "python")
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=self.kconf)
        p = self.spawn(
            "keystone",
            [py, os.path.abspath(__file__), "serve-keystone", "--port", str(self.ks_port), "--config", self.kconf,
             "--log", os.path.join(self.state, "logs", "keystone-access.log")],
            env,
        )
        wait_http(f"{self.ks}/v3", p, "keystone")

    def keystone_objects(self):
        """Projects, the member user, its role and application credential, the network service."""
        ks = self.ks
        admin_token, _ = token(ks, "admin", ADMIN_PASSWORD, "admin")
        domain = "default"
        _, _, b = http("POST", f"{ks}/v3/projects", {"project": {"name": PROJECT, "domain_id": domain}}, admin_token)
        project_id = b["project"]["id"]
        http("POST", f"{ks}/v3/projects", {"project": {"name": OTHER_PROJECT, "domain_id": domain}}, admin_token)
        _, _, b = http("POST", f"{ks}/v3/users",
                       {"user": {"name": MEMBER_USER, "password": MEMBER_PASSWORD, "domain_id": domain}}, admin_token)
        user_id = b["user"]["id"]
        _, _, b = http("GET", f"{ks}/v3/roles?name=member", None, admin_token)
        member_role = b["roles"][0]["id"]
        http("PUT", f"{ks}/v3/projects/{project_id}/users/{user_id}/roles/{member_role}", None, admin_token)
        _, _, b = http("POST", f"{ks}/v3/services", {"service": {"type": "network", "name": "neutron"}}, admin_token)
        service_id = b["service"]["id"]
        for iface in ("public", "internal", "admin"):
            http("POST", f"{ks}/v3/endpoints",
                 {"endpoint": {"service_id": service_id, "interface": iface, "url": self.nt, "region_id": REGION}},
                 admin_token)
        member_token, _ = token(ks, MEMBER_USER, MEMBER_PASSWORD, PROJECT)
        _, _, b = http("POST", f"{ks}/v3/users/{user_id}/application_credentials",
                       {"application_credential": {"name": "kpaas-mesh-test", "roles": [{"name": "member"}]}},
                       member_token)
        ac = b["application_credential"]
        return admin_token, member_token, {
            "member": {"username": MEMBER_USER, "password": MEMBER_PASSWORD, "project": PROJECT,
                       "user_id": user_id, "project_id": project_id},
            "application_credential": {"id": ac["id"], "secret": ac["secret"], "name": ac["name"]},
        }

    def retarget_endpoints(self):
        """Points the catalog's identity and network endpoints at this run's ports."""
        admin_token, _ = token(self.ks, "admin", ADMIN_PASSWORD, "admin")
        _, _, b = http("GET", f"{self.ks}/v3/services", None, admin_token)
        types = {s["id"]: s["type"] for s in b["services"]}
        _, _, b = http("GET", f"{self.ks}/v3/endpoints", None, admin_token)
        for e in b["endpoints"]:
            url = {"identity": f"{self.ks}/v3", "network": self.nt}.get(types.get(e["service_id"]))
            if url and e["url"] != url:
                http("PATCH", f"{self.ks}/v3/endpoints/{e['id']}", {"endpoint": {"url": url}}, admin_token)
        # Neutron's first authenticated request initializes it (policies, its own service token): do it now so the
        # tests' first step does not pay for it.
        http("GET", f"{self.nt}/v2.0/networks", None, admin_token)

    # -- Neutron
    def neutron_conf(self, port):
        nv = venv("neutron", NEUTRON_VERSION)
        d = self.ndir
        os.makedirs(d, exist_ok=True)
        self.nt_port = port
        self.nt = f"http://127.0.0.1:{port}"
        self.ndb = f"sqlite:///{d}/neutron.db"
        self.nconf = os.path.join(d, "neutron.conf")
        self.ml2 = os.path.join(d, "ml2.ini")
        with open(self.nconf, "w") as f:
            f.write(
                f"""[DEFAULT]
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = fake:/
api_paste_config = {nv}/etc/neutron/api-paste.ini
state_path = {d}
bind_host = 127.0.0.1
bind_port = {port}
log_file = {self.state}/logs/neutron-app.log
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
[database]
connection = {self.ndb}
[oslo_concurrency]
lock_path = {d}/lock
[keystone_authtoken]
www_authenticate_uri = {self.ks}/v3
auth_url = {self.ks}/v3
auth_type = password
username = admin
password = {ADMIN_PASSWORD}
project_name = admin
user_domain_name = Default
project_domain_name = Default
"""
            )
        with open(self.ml2, "w") as f:
            f.write(
                """[ml2]
type_drivers = flat,vlan,local
tenant_network_types = local
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
"""
            )

    def neutron_schema(self):
        py = os.path.join(venv("neutron", NEUTRON_VERSION), "bin", "python")
        with open(os.path.join(self.state, "logs", "neutron-schema.log"), "a") as lf:
            subprocess.run([py, os.path.abspath(__file__), "neutron-schema", "--url", self.ndb], check=True,
                           stdout=lf, stderr=lf)

    def start_neutron(self):
        py = os.path.join(venv("neutron", NEUTRON_VERSION), "bin", "python")
        p = self.spawn(
            "neutron",
            [py, os.path.abspath(__file__), "serve-neutron", "--port", str(self.nt_port), "--config", self.nconf,
             "--ml2", self.ml2, "--log", os.path.join(self.state, "logs", "neutron-access.log")],
        )
        wait_http(f"{self.nt}/", p, "neutron")

    def neutron_objects(self, admin, member):
        nt = f"{self.nt}/v2.0"
        _, _, b = http("POST", f"{nt}/networks", {"network": {
            "name": "public", "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": "external", "shared": False}}, admin)
        ext = b["network"]["id"]
        http("POST", f"{nt}/subnets", {"subnet": {
            "network_id": ext, "name": "public-subnet", "ip_version": 4, "cidr": "203.0.113.0/24",
            "gateway_ip": "203.0.113.1", "enable_dhcp": False,
            "allocation_pools": [{"start": "203.0.113.10", "end": "203.0.113.250"}]}}, admin)
        _, _, b = http("POST", f"{nt}/routers", {"router": {
            "name": "kpaas-router", "external_gateway_info": {"network_id": ext}}}, member)
        router = b["router"]["id"]
        clusters = {}
        for name, (cidr, ips) in CLUSTERS.items():
            _, _, b = http("POST", f"{nt}/networks", {"network": {"name": f"{name}-net"}}, member)
            net = b["network"]["id"]
            # The MetalLB range (.200 up) stays outside the allocation pool, as on K-PaaS.
            prefix = cidr.rsplit(".", 1)[0]
            _, _, b = http("POST", f"{nt}/subnets", {"subnet": {
                "network_id": net, "name": f"{name}-subnet", "ip_version": 4, "cidr": cidr,
                "enable_dhcp": False, "allocation_pools": [{"start": f"{prefix}.2", "end": f"{prefix}.199"}]}},
                member)
            subnet = b["subnet"]["id"]
            http("PUT", f"{nt}/routers/{router}/add_router_interface", {"subnet_id": subnet}, member)
            nodes = []
            for i, ip in enumerate(ips, start=1):
                server = f"{int(cidr.split('.')[1]):08x}-0000-4000-8000-{i:012x}"
                _, _, b = http("POST", f"{nt}/ports", {"port": {
                    "network_id": net, "name": f"{name}-node-{i}", "device_id": server,
                    "device_owner": "compute:nova", "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}]}}, member)
                nodes.append({"name": f"{name}-node-{i}", "ip": ip, "server_id": server, "port_id": b["port"]["id"]})
            clusters[name] = {"network_id": net, "subnet_id": subnet, "cidr": cidr, "nodes": nodes}
        return {"external_network_id": ext, "router_id": router, "clusters": clusters}


def template_dir():
    """The cached, fully built cloud (databases and keys), keyed by this file's content."""
    with open(os.path.abspath(__file__), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    return os.path.join(cache_dir(), f"cloud-template-{digest}")


def build_template():
    """Bootstraps Keystone, builds Neutron's schema and the fixtures once; later runs copy the result."""
    final = template_dir()
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    c = Cloud(tmp)
    try:
        c.keystone_conf(free_port())
        c.keystone_bootstrap()
        c.start_keystone()
        c.neutron_conf(free_port())
        c.neutron_schema()
        c.start_neutron()
        admin, member, ids = c.keystone_objects()
        ids.update(c.neutron_objects(admin, member))
    finally:
        c.stop()
    with open(os.path.join(tmp, "fixture.json"), "w") as f:
        json.dump(ids, f, indent=2)
    shutil.rmtree(os.path.join(tmp, "logs"), ignore_errors=True)
    for old in glob.glob(os.path.join(cache_dir(), "cloud-template-*")):
        if old != tmp:
            shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, final)


def ensure_template():
    os.makedirs(cache_dir(), exist_ok=True)
    with open(os.path.join(cache_dir(), ".cloud-template.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test processes build it once
        if not os.path.isfile(os.path.join(template_dir(), "fixture.json")):
            t0 = time.time()
            log("building the cloud template (once per version of cloud.py)")
            build_template()
            log(f"template ready in {time.time() - t0:.1f}s: {template_dir()}")
    return template_dir()


def run_cloud(state, stopping):
    t0 = time.time()
    tdir = ensure_template()
    t1 = time.time()
    c = Cloud(state)
    for sub in ("keystone", "neutron"):
        shutil.rmtree(os.path.join(c.state, sub), ignore_errors=True)
        shutil.copytree(os.path.join(tdir, sub), os.path.join(c.state, sub))
    with open(os.path.join(tdir, "fixture.json")) as f:
        fixture = json.load(f)
    c.keystone_conf(free_port())
    c.neutron_conf(free_port())
    try:
        c.start_keystone()
        c.start_neutron()
        c.retarget_endpoints()
        t2 = time.time()
        info = {
            "keystone_url": f"{c.ks}/v3",
            "neutron_url": c.nt,
            "region": REGION,
            "admin": {"username": "admin", "password": ADMIN_PASSWORD, "project": "admin"},
            "other_project": OTHER_PROJECT,
            "timings_secs": {"template": round(t1 - t0, 2), "servers": round(t2 - t1, 2)},
            **fixture,
        }
        path = os.path.join(c.state, "cloud.json")
        with open(path + ".tmp", "w") as f:
            json.dump(info, f, indent=2)
        os.replace(path + ".tmp", path)
        print(f"READY {path}", flush=True)
        while not stopping.wait(0.5):
            for name, p in c.procs:
                if p.poll() is not None:
                    log(f"{name} exited unexpectedly ({p.returncode})")
                    stopping.set()
    finally:
        c.stop()


def cmd_template(a):
    ensure_template()
    print(template_dir())


def cmd_up(a):
    stopping = threading.Event()

    def on_signal(*_):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(1):
                pass
        except Exception:
            pass
        stopping.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        run_cloud(a.state, stopping)
    except Exception as e:
        print(f"FAILED {e}", flush=True)
        log(f"FAILED: {e}")
    finally:
        sys.stdout.flush()
        os._exit(0)  # not through interpreter shutdown: the stdin watcher thread may hold the stdin lock


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up")
    p.add_argument("--state", required=True)
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("template")
    p.set_defaults(func=cmd_template)
    p = sub.add_parser("serve-keystone")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--log", required=True)
    p.set_defaults(func=cmd_serve_keystone)
    p = sub.add_parser("serve-neutron")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--ml2", required=True)
    p.add_argument("--log", required=True)
    p.set_defaults(func=cmd_serve_neutron)
    p = sub.add_parser("neutron-schema")
    p.add_argument("--url", required=True)
    p.set_defaults(func=cmd_neutron_schema)
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
