"""Process model: forked workers, respawn after kill -9, graceful SIGTERM/SIGINT, the bounded
request queue (503 + Retry-After) and requests of vanished clients.

Synchronisation is by marker files the app writes (started-/ran-/finished-<token>) and by
files the test writes (release-<token>), never by sleeping."""

import json
import os
import re
import select
import socket
import signal
import threading

import pytest

from e2e_helpers import (
    children_of,
    release,
    server_has_read,
    start_blocked_request,
    RawHTTP,
    assert_serves,
    build_request,
    http_get,
    pid_alive,
    port_accepts,
    wait_for_file,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)




def environ(server):
    resp = http_get(server.port, "/environ")
    assert resp.status == 200, resp
    return json.loads(resp.body)["environ"]


# ---------------------------------------------------------------- the embedded interpreter


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_sys_executable_is_a_python_interpreter(app_server, start_method):
    """subprocess and multiprocessing's spawn/forkserver start sys.executable with Python's
    own options: under the standalone binary it must name a Python, not appserver."""
    with RawHTTP(app_server.port, timeout=90) as c:
        resp = c.request("GET", f"/interpreter?start_method={start_method}")
    assert resp.status == 200, resp
    out = json.loads(resp.body)
    assert out["subprocess"]["rc"] == 0, out
    assert out["subprocess"]["stdout"].startswith("(3, "), out
    assert out["pool"] == [1, 4, 9], out
    assert_serves(app_server)


# ---------------------------------------------------------------- workers


def test_workers_are_forked_children(server_factory):
    server = server_factory.start(args=["--workers", "2"])
    workers = wait_until(lambda: (w := server.workers()) and len(w) == 2 and w, 20, "2 worker processes")
    pids = set()
    for _ in range(10):
        resp = http_get(server.port, "/pid")
        info = json.loads(resp.body)
        pids.add(info["pid"])
        assert info["ppid"] == server.pid, "requests must be served by workers forked from the master"
    assert pids <= set(workers)
    assert environ(server)["wsgi.multiprocess"] is True


def test_event_loop_runs_as_batch_thread_and_app_threads_do_not(server_factory):
    # The event-loop thread (the worker's main thread) must not preempt the app thread on
    # every arriving request (docs/architecture.md); the app's threads keep the normal policy.
    server = server_factory.start(args=["--workers", "1", "--blocking-threads", "2"])
    info = json.loads(http_get(server.port, "/pid").body)
    assert info["tid"] != info["pid"], "the app runs on a blocking thread, not the loop"
    assert os.sched_getscheduler(info["pid"]) == os.SCHED_BATCH
    assert info["policy"] == os.SCHED_OTHER
    assert os.sched_getscheduler(server.pid) == os.SCHED_OTHER  # the master is untouched


def test_killed_worker_is_respawned(server_factory):
    server = server_factory.start(args=["--workers", "2"])
    workers = wait_until(lambda: (w := server.workers()) and len(w) == 2 and w, 20, "2 worker processes")
    victim, survivor = workers
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not pid_alive(victim), 10, f"worker {victim} to die")
    # The others keep serving while the master replaces the dead one.
    for _ in range(20):
        assert_serves(server)
    new_workers = wait_until(
        lambda: (w := server.workers()) and len(w) == 2 and victim not in w and w, 20, "a replacement worker"
    )
    assert survivor in new_workers, "killing one worker must not restart the others"
    assert server.alive()
    # The replacement serves too: every worker answers within a bounded number of tries.
    seen = set()
    for _ in range(200):
        seen.add(json.loads(http_get(server.port, "/pid").body)["pid"])
        if seen >= set(new_workers):
            break
    assert seen <= set(new_workers)
    assert_serves(server)


def test_workers_exit_when_master_is_killed(server_factory):
    server = server_factory.start(args=["--workers", "2"])
    workers = wait_until(lambda: (w := server.workers()) and len(w) == 2 and w, 20, "2 worker processes")
    server.send_signal(signal.SIGKILL)
    assert server.wait_exit(10) is not None
    wait_until(lambda: not any(pid_alive(w) for w in workers), 20, "orphaned workers to exit")
    wait_until(lambda: not port_accepts(server.port), 10, "the port to be released")


def test_blocking_threads_serve_concurrently(server_factory, token):
    server = server_factory.start(args=["--workers", "1", "--blocking-threads", "2"])
    blocked = start_blocked_request(server, token)
    try:
        assert_serves(server)  # served by the second thread while the first is held
    finally:
        release(server, token)
    assert blocked.read_response().status == 200
    blocked.close()


@pytest.mark.parametrize("how", ["exit", "abort"])
def test_worker_dying_mid_request_is_replaced(server_factory, token, how):
    server = server_factory.start(args=["--workers", "1"])
    (old,) = wait_until(lambda: (w := server.workers()) and len(w) == 1 and w, 20, "1 worker")
    with RawHTTP(server.port) as c:
        c.send(build_request("GET", f"/crash?token={token}&how={how}", port=server.port))
        # Nobody is left to answer: the connection ends without a (complete) response.
        resp = c.read_response_or_eof()
        assert resp is None or resp.status >= 500, resp
    wait_for_file(server.marker(f"crashing-{token}"))
    wait_until(lambda: (w := server.workers()) and len(w) == 1 and old not in w, 20, "a replacement worker")
    wait_until(lambda: _serves(server), 20, "the replacement worker to serve")
    assert server.alive()


def test_request_that_keeps_crashing_the_worker_does_not_keep_it_away(server_factory, token):
    """A worker that was serving and is killed by a request comes back at once, however
    often that repeats (a client retrying the request): no start-up backoff, which grew
    to 10 s per crash when the worker had just started. Eight crashes in a row; each
    replacement must serve within 5 s (it takes milliseconds; the backoff took 6.4 s by
    the seventh)."""
    server = server_factory.start(args=["--workers", "1"])
    for i in range(8):
        (old,) = wait_until(lambda: (w := server.workers()) and len(w) == 1 and w, 20, "1 worker")
        with RawHTTP(server.port) as c:
            c.send(build_request("GET", f"/crash?token={token}-{i}", port=server.port))
            resp = c.read_response_or_eof()
            assert resp is None or resp.status >= 500, resp
        wait_until(lambda: (w := server.workers()) and old not in w, 5, f"replacement {i}")
        wait_until(lambda: _serves(server), 5, f"replacement {i} to serve")
    assert "before it was ready" not in server.log()


def test_worker_killed_by_a_fatal_signal_leaves_its_python_stack(server_factory, token):
    """A C-level crash (here abort()) is logged with the Python stack that led to it."""
    server = server_factory.start(args=["--workers", "1"])
    with RawHTTP(server.port) as c:
        c.send(build_request("GET", f"/crash?token={token}&how=abort", port=server.port))
        c.read_response_or_eof()
    log = server.wait_for_log("killed by signal")
    assert "Fatal Python error: Aborted" in log, log
    assert "in route_crash" in log, log
    wait_until(lambda: _serves(server), 20, "the replacement worker to serve")


def _serves(server) -> bool:
    try:
        return http_get(server.port, "/hello").status == 200
    except OSError:
        return False


def test_many_concurrent_clients(server_factory):
    server = server_factory.start(args=["--workers", "2", "--blocking-threads", "4"])
    failures = []

    def client(n):
        try:
            with RawHTTP(server.port, timeout=30) as c:
                for i in range(25):
                    if i % 2:
                        body = f"client {n} request {i} ".encode() * (i + 1)
                        resp = c.request("POST", "/echo", body=body)
                        assert resp.body == body, (n, i)
                    else:
                        resp = c.request("GET", f"/environ/c{n}?i={i}")
                        env = json.loads(resp.body)["environ"]
                        assert (env["PATH_INFO"], env["QUERY_STRING"]) == (f"/environ/c{n}", f"i={i}")
        except Exception as e:  # noqa: BLE001 - collected and reported
            failures.append(f"client {n}: {e!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not failures, failures[:5]
    assert not any(t.is_alive() for t in threads)


# ---------------------------------------------------------------- signals


def test_sigterm_lets_inflight_request_finish(server_factory, token):
    server = server_factory.start(args=["--workers", "1", "--blocking-threads", "2"])
    blocked = start_blocked_request(server, token)
    server.send_signal(signal.SIGTERM)
    release(server, token)
    resp = blocked.read_response()
    blocked.close()
    assert resp.status == 200, resp
    assert resp.body == f"released {token}".encode()
    code = server.wait_exit(30)
    assert code == 0, f"exit code after SIGTERM: {code}"
    result = server.stop()
    assert not result.leftovers, f"workers outlived the master: {result.leftovers}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd-stop"])
def test_signal_to_the_whole_process_group_is_still_graceful(server_factory, token, sig):
    """Ctrl-C in a terminal and systemd's stop signal every process of the tree: each
    worker gets the signal itself and again from the master, which must not read as the
    "second signal, stop now" that would cut the request in flight."""
    server = server_factory.start(args=["--workers", "2", "--blocking-threads", "2"])
    blocked = start_blocked_request(server, token)
    os.killpg(server.pid, sig)  # the server leads its own session and process group
    server.wait_for_log("stopping workers gracefully")
    release(server, token)
    resp = blocked.read_response()
    blocked.close()
    assert resp.status == 200, resp
    assert server.wait_exit(30) == 0
    assert "stop now" not in server.log()


def test_second_signal_to_the_master_stops_now(server_factory, token):
    server = server_factory.start(args=["--workers", "2", "--blocking-threads", "2"])
    blocked = start_blocked_request(server, token)
    try:
        server.send_signal(signal.SIGTERM)
        server.wait_for_log("stopping workers gracefully")
        server.send_signal(signal.SIGTERM)
        server.wait_for_log("asked to stop now")
        assert server.wait_exit(30) == 1, "requests were cut: not a clean exit"
        assert blocked.read_response_or_eof() is None, "the request in flight was cut"
    finally:
        release(server, token)
        blocked.close()
    assert not server.stop().leftovers


def test_sigterm_stops_accepting_new_connections(server_factory, token):
    server = server_factory.start(args=["--workers", "1", "--blocking-threads", "2"])
    blocked = start_blocked_request(server, token)
    server.send_signal(signal.SIGTERM)
    try:
        wait_until(lambda: not port_accepts(server.port), 15, "the listener to close after SIGTERM")
        assert not server.marker(f"finished-{token}").exists()
    finally:
        release(server, token)
    assert blocked.read_response().status == 200
    blocked.close()
    assert server.wait_exit(30) == 0


def test_sigterm_closes_idle_keep_alive_while_request_in_flight(server_factory, token):
    server = server_factory.start(args=["--workers", "1", "--blocking-threads", "2", "--keep-alive-timeout", "300"])
    idle = RawHTTP(server.port, timeout=15)
    assert idle.request("GET", "/hello").status == 200
    blocked = start_blocked_request(server, token)
    server.send_signal(signal.SIGTERM)
    try:
        assert idle.wait_closed(), "idle keep-alive connection not closed at shutdown"
        assert not server.marker(f"finished-{token}").exists()
    finally:
        release(server, token)
        idle.close()
    resp = blocked.read_response()
    blocked.close()
    assert resp.status == 200
    assert server.wait_exit(30) == 0


def test_keep_alive_answer_sent_before_a_stop_lets_the_next_request_in(server_factory, token):
    """A response that promised keep-alive before SIGTERM arrived is followed by the
    client's next request at once; it must be answered (with Connection: close), not
    lost to a close the client could not see coming."""
    server = server_factory.start(args=["--workers", "1", "--blocking-threads", "2"])
    c = RawHTTP(server.port, timeout=30)
    try:
        c.send(build_request("GET", f"/big-list?kib=16384&token={token}", port=server.port))
        first = c._read_head()  # promised before the stop: no Connection: close
        assert first.status == 200 and first.header("Connection") is None, first
        server.send_signal(signal.SIGTERM)
        server.wait_for_log("signal 15 received")
        c._read_body(first, "GET")  # the client takes the rest only now
        assert len(first.body) == 16384 * 1024
        nxt = c.request("GET", "/hello")
        assert nxt.status == 200 and nxt.body == b"Hello, world!\n", nxt
        assert nxt.header("Connection") == "close", nxt
        assert c.wait_closed()
    finally:
        c.close()
    assert server.wait_exit(30) == 0


def test_half_sent_request_head_does_not_hold_a_graceful_stop(server_factory):
    """A client trickling a request head gets a short grace at SIGTERM (then 408), not the
    whole --header-read-timeout: the stop ends promptly and cleanly."""
    server = server_factory.start(args=["--header-read-timeout", "120"])
    c = RawHTTP(server.port, timeout=30)
    try:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert_serves(server)  # the partial head has been read by now
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0
        resp = c.read_response_or_eof()
        assert resp is None or resp.status == 408, resp
    finally:
        c.close()


def test_head_begun_during_the_stop_grace_gets_only_the_grace(server_factory):
    """A keep-alive client that starts a new request head after SIGTERM gets what is left
    of the grace to finish it (else 408), not the whole --header-read-timeout."""
    server = server_factory.start(args=["--header-read-timeout", "60"])
    c = RawHTTP(server.port, timeout=30)
    try:
        assert c.request("GET", "/hello").status == 200
        server.send_signal(signal.SIGTERM)
        server.wait_for_log("signal 15 received")
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ", tolerate_close=True)
        assert server.wait_exit(20) == 0
    finally:
        c.close()


def test_short_graceful_timeout_still_stops_cleanly_with_idle_connections(server_factory):
    """The grace given to idle keep-alive connections must fit in --graceful-timeout."""
    server = server_factory.start(args=["--graceful-timeout", "1"])
    idle = RawHTTP(server.port, timeout=30)
    try:
        assert idle.request("GET", "/hello").status == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0, server.log_tail()
        assert idle.wait_closed()
    finally:
        idle.close()


def test_sigint_exits_cleanly(server_factory):
    server = server_factory.start()
    assert_serves(server)
    server.send_signal(signal.SIGINT)
    assert server.wait_exit(30) == 0
    assert not server.stop().leftovers


def test_operator_signals_do_not_stop_the_server(server_factory):
    """USR1 (logrotate's postrotate; without an access log), USR2, ALRM: to the master and
    to every process of the tree, they are logged or ignored, never fatal. (TTIN/TTOU
    resize and HUP reloads: test_operations.py.)"""
    server = server_factory.start(args=["--workers", "2"])
    assert_serves(server)
    workers = sorted(children_of(server.pid))
    assert len(workers) == 2
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        server.send_signal(sig)
        server.wait_for_log(f"(signal {int(sig)}): nothing to do; ignored")
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        for pid in workers:
            os.kill(pid, sig)
        for i in range(len(workers)):
            server.wait_for_log(f"worker {i}: signal {int(sig)} ignored")
    assert_serves(server)
    assert pid_alive(server.pid)
    assert sorted(children_of(server.pid)) == workers, "no worker died and was replaced"
    assert "exited" not in server.log() and "killed by signal" not in server.log()
    assert server.stop().returncode == 0


def test_buffered_print_output_is_written_when_a_worker_stops(server_factory, token):
    """stdout to a file or pipe is block-buffered (no PYTHONUNBUFFERED): what the app
    print()ed must still reach it when the worker exits."""
    server = server_factory.start(env={"PYTHONUNBUFFERED": ""})
    assert http_get(server.port, f"/print?token={token}").status == 200
    assert server.stop().returncode == 0
    assert f"printed-{token}" in server.stdout()


def test_signal_handler_the_app_installed_stays_in_workers(server_factory):
    """faulthandler.register(SIGUSR1) at import: a worker sent SIGUSR1 dumps its stacks
    (and keeps serving) rather than having the signal swallowed by the server."""
    server = server_factory.start(env={"E2E_FAULTHANDLER_USR1": "1"})
    assert_serves(server)
    (worker,) = children_of(server.pid)
    os.kill(worker, signal.SIGUSR1)
    server.wait_for_log("most recent call first")
    assert_serves(server)
    assert children_of(server.pid) == [worker]


def test_output_printed_before_the_fork_is_written_once(server_factory, token):
    """The app is imported in the master: what it printed then must not be copied into
    every worker's buffer (and written again as each one exits)."""
    server = server_factory.start(
        args=["--workers", "2"], env={"PYTHONUNBUFFERED": "", "E2E_PRINT_AT_IMPORT": token}
    )
    assert_serves(server)
    assert server.stop().returncode == 0
    assert server.stdout().count(f"imported-{token}") == 1, server.stdout()


def test_threads_started_while_loading_are_named_in_a_warning(server_factory):
    """The app is loaded in the master, so a thread it starts at import is not in the
    workers: the operator is told which ones, once (apps from gunicorn rely on them)."""
    server = server_factory.start("threaded_app:app", ["--workers", "2"], probe="/")
    body = http_get(server.port, "/").body.decode()
    assert "import-time-ticker" not in body, body  # what the warning is about
    line = server.wait_for_log("thread(s) while loading")
    assert "import-time-ticker" in line
    assert server.log().count("thread(s) while loading") == 1
    plain = server_factory.start()
    assert_serves(plain)
    assert "while loading" not in plain.log()


def test_lazy_apps_imports_the_app_in_each_worker(server_factory):
    """--lazy-apps: each worker imports the app after the fork, so what the app starts at
    import time (threads, connections) is its own; no warning about lost threads."""
    server = server_factory.start("threaded_app:app", ["--workers", "2", "--lazy-apps"], probe="/")
    workers = set(children_of(server.pid))
    assert len(workers) == 2
    seen = set()
    for _ in range(50):
        resp = http_get(server.port, "/")
        assert "import-time-ticker" in resp.body.decode(), resp.body
        assert resp.header("X-Imported-In") == resp.header("X-Served-By"), resp
        seen.add(int(resp.header("X-Served-By")))
    assert seen <= workers
    assert "while loading" not in server.log()
    # Without it the app is imported once, in the master.
    preloaded = server_factory.start("threaded_app:app", ["--workers", "2"], probe="/")
    assert http_get(preloaded.port, "/").header("X-Imported-In") == str(preloaded.pid)


def test_lazy_apps_processes_started_at_import_have_a_clean_signal_mask(server_factory):
    """Imported in the worker: a process the import starts must not inherit the signals
    the master blocks (it could not be stopped with SIGTERM)."""
    server = server_factory.start("import_spawn_app:app", ["--lazy-apps"], probe="/")
    assert http_get(server.port, "/").body == b"0000000000000000"


def test_lazy_apps_worker_exiting_with_status_4_while_serving_is_respawned(server_factory, token):
    """Status 4 means "could not load the app" only before the worker is ready."""
    server = server_factory.start(args=["--lazy-apps"])
    (old,) = wait_until(lambda: (w := server.workers()) and len(w) == 1 and w, 20, "1 worker")
    with RawHTTP(server.port) as c:
        c.send(build_request("GET", f"/crash?token={token}&code=4", port=server.port))
        c.read_response_or_eof()
    wait_until(lambda: (w := server.workers()) and old not in w, 20, "a replacement worker")
    wait_until(lambda: _serves(server), 20, "the replacement to serve")
    assert server.alive()


def test_all_workers_stuck_still_answer_new_clients(server_factory, token):
    """With several workers, one whose threads are stuck stops accepting so the others take
    new clients; when every worker is stuck, new clients must still get their 503."""
    server = server_factory.start(
        args=["--workers", "2", "--blocking-threads", "1", "--request-queue-timeout", "0.5"]
    )
    workers = set(wait_until(lambda: (w := server.workers()) and len(w) == 2 and w, 20, "2 workers"))
    holders, tokens = [], []

    def stuck():
        pids = set()
        for t in tokens:
            m = server.marker(f"started-{t}")
            if m.exists() and m.read_text():
                pids.add(int(m.read_text()))
        return pids

    try:
        for i in range(40):
            if stuck() == workers:
                break
            t = f"{token}-{i}"
            tokens.append(t)
            c = RawHTTP(server.port, timeout=20)
            holders.append(c)
            c.send(build_request("GET", f"/block?token={t}", port=server.port))
            # Either a free thread starts it, or it queues behind a stuck thread and gets its
            # 503 (after which that worker lets the other one take new connections).
            started = server.marker(f"started-{t}")
            wait_until(lambda: started.exists() or select.select([c.sock], [], [], 0)[0], 20,
                       "the request to start or be refused")
        wait_until(lambda: stuck() == workers, 20, "both workers' threads to be stuck")
        for _ in range(3):
            with RawHTTP(server.port, timeout=20) as late:
                resp = late.request("GET", "/hello")
                assert resp.status == 503, resp
    finally:
        for t in tokens:
            release(server, t)
        for c in holders:
            c.close()
    wait_until(lambda: _serves(server), 20, "the workers to serve again")


def test_lazy_apps_import_error_stops_the_server(server_factory):
    """A worker that cannot import the app would fail the same way at every respawn: the
    master stops everything and exits 1, with the traceback in the log."""
    server = server_factory.start("broken_app:app", ["--workers", "2", "--lazy-apps"], wait=False)
    code = server.wait_exit(30)
    assert code == 1, f"exit code {code}"
    log = server.log()
    assert "broken_app import failure marker 7f3a" in log and "Traceback" in log
    assert "could not load the application" in log
    assert "respawning" not in log


def test_sigterm_not_held_by_idle_keep_alive_connection(server_factory):
    server = server_factory.start(args=["--keep-alive-timeout", "300"])
    idle = RawHTTP(server.port, timeout=30)
    assert idle.request("GET", "/hello").body == b"Hello, world!\n"
    server.send_signal(signal.SIGTERM)
    code = server.wait_exit(30)
    assert code == 0, "an idle keep-alive client must not hold the shutdown"
    assert idle.wait_closed()
    idle.close()


# ---------------------------------------------------------------- request queue


def _open_keep_alive(server, n):
    """n connections, each proven accepted by one answered request (keep-alive)."""
    conns = []
    for _ in range(n):
        c = RawHTTP(server.port, timeout=40)
        c.send(build_request("GET", "/hello", port=server.port))
        assert c.read_response().status == 200
        conns.append(c)
    return conns


def test_full_request_queue_answers_503(server_factory, token):
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--request-queue-size", "1"]
    )
    assert environ(server)["wsgi.multithread"] is False
    tokens = [f"{token}-{i}" for i in range(3)]
    conns = _open_keep_alive(server, len(tokens))  # open before the queue fills
    holder = start_blocked_request(server, token)  # occupies the only blocking thread
    results, errors = {}, {}
    for t, c in zip(tokens, conns):
        c.send(build_request("GET", f"/block?token={t}", port=server.port))

    def reader(t, c):
        try:
            results[t] = c.read_response()
        except Exception as e:  # noqa: BLE001 - reported below
            errors[t] = e

    threads = [threading.Thread(target=reader, args=tc, daemon=True) for tc in zip(tokens, conns)]
    for th in threads:
        th.start()
    try:
        # With the thread busy and one queue slot, at least one must be refused right away.
        wait_until(
            lambda: any(r.status == 503 for r in list(results.values())), 20, "a 503 from the full queue"
        )
    finally:
        for t in [token] + tokens:
            release(server, t)
    for th in threads:
        th.join(timeout=40)
    assert holder.read_response().status == 200
    holder.close()
    for c in conns:
        c.close()
    assert not errors, f"connections failed: {errors!r}"
    statuses = sorted(r.status for r in results.values())
    refused = [r for r in results.values() if r.status == 503]
    assert all(r.header("Retry-After") for r in refused), f"503 without Retry-After: {refused!r}"
    assert all(r.header("Retry-After").strip().isdigit() for r in refused)
    assert statuses.count(200) >= 1, f"the queued request should have run after the release: {statuses}"
    assert set(statuses) <= {200, 503}, statuses
    for t, r in results.items():
        if r.status == 503:
            assert not server.marker(f"started-{t}").exists(), "a refused request reached the app"
    server.wait_for_log("answered 503")  # refusals are logged
    assert_serves(server)


def test_single_stuck_worker_answers_new_clients_once_its_full_queue_expired(server_factory, token):
    """A worker whose queue filled up stops accepting; when its only thread is stuck, the
    queued requests expire (503) and the worker must take new connections again to answer
    them too, instead of leaving them in the listen backlog until the thread frees up."""
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--request-queue-size", "2",
              "--request-queue-timeout", "1"]
    )
    holder = start_blocked_request(server, token)
    try:
        queued = []
        for _ in range(2):
            c = RawHTTP(server.port, timeout=20)
            c.send(build_request("GET", "/hello", port=server.port))
            wait_until(lambda: server_has_read(c), 10, "the request to be queued")
            queued.append(c)
        late = RawHTTP(server.port, timeout=20)  # waits in the listen backlog at first
        late.send(build_request("GET", "/hello", port=server.port))
        for c in queued + [late]:
            resp = c.read_response()
            assert resp.status == 503 and resp.header("Retry-After"), resp
            c.close()
    finally:
        release(server, token)
    assert holder.read_response().status == 200
    holder.close()
    assert_serves(server)


def test_full_request_queue_stops_accepting_instead_of_refusing(server_factory, token):
    # While the queue is full a new connection waits in the listen backlog (or goes to
    # another worker) rather than being accepted only to get a 503.
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--request-queue-size", "1",
              "--log-level", "debug"]
    )
    (queued,) = _open_keep_alive(server, 1)
    holder = start_blocked_request(server, token)
    queued.send(build_request("GET", "/hello", port=server.port))  # fills the queue
    wait_until(lambda: "not accepting connections" in server.log(), 20, "the worker to stop accepting")
    late = RawHTTP(server.port, timeout=40)  # completes in the kernel's listen backlog
    late.send(build_request("GET", "/hello", port=server.port))
    release(server, token)
    assert holder.read_response().status == 200
    assert queued.read_response().status == 200
    assert late.read_response().status == 200, "the late connection is served, not refused"
    for c in (holder, queued, late):
        c.close()
    wait_until(lambda: "accepting again" in server.log(), 20, "the worker to accept again")
    assert "answered 503" not in server.log()
    assert_serves(server)


def test_queued_request_of_vanished_client_never_runs(server_factory, token):
    """A keep-alive request whose client left after it had waited in the queue for a
    while (an overloaded server's client giving up) is dropped without running the app.
    Time passing is proven by a silent connection, opened after the request was queued,
    being closed after --header-read-timeout 1 (>= the 1 s a request must have waited)."""
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--request-queue-size", "8",
              "--header-read-timeout", "1"]
    )
    holder = start_blocked_request(server, token)
    gone = RawHTTP(server.port)
    gone.send(build_request("GET", f"/mark?token={token}-gone", port=server.port))
    wait_until(lambda: server_has_read(gone), 20, "the request to be queued")
    quiet = RawHTTP(server.port, timeout=30)
    gone.close()  # the client leaves while its request waits for the busy thread
    assert quiet.wait_closed(timeout=20)
    quiet.close()
    release(server, token)
    assert holder.read_response().status == 200
    holder.close()
    # FIFO with one thread: once a later request is answered, the earlier one was decided.
    assert_serves(server)
    assert http_get(server.port, f"/mark?token={token}-after").status == 200
    assert server.marker(f"ran-{token}-after").exists()
    assert not server.marker(f"ran-{token}-gone").exists(), "a request whose client left was run"


def test_request_followed_by_a_half_close_is_answered(server_factory):
    """Scripts and test tools often send a request, shut down their sending side and read
    until the server closes (shutdown(SHUT_WR), nc -N): the request is answered."""
    server = server_factory.start()
    for _ in range(5):
        with RawHTTP(server.port) as c:
            c.send(build_request("GET", "/hello", port=server.port))
            c.sock.shutdown(socket.SHUT_WR)
            resp = c.read_response()
            assert resp.status == 200 and resp.body == b"Hello, world!\n", resp
            assert c.wait_closed()


@pytest.mark.parametrize("queue", [[], ["--request-queue-size", "1"]], ids=["default-queue", "one-slot-queue"])
def test_request_queued_past_its_deadline_gets_503(server_factory, token, queue):
    """A request that waited longer than --request-queue-timeout is answered 503 +
    Retry-After without reaching the app. With a one-slot queue too: the queue is full only
    until a thread takes the request, and the worker must accept again then (not when the
    request ends), so the next request waits in the queue, where the timeout applies, not
    unseen in the kernel. Time passing is proven by a silent connection, opened first,
    being closed after --header-read-timeout 2 (> --request-queue-timeout 0.5)."""
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--request-queue-timeout", "0.5",
              "--header-read-timeout", "2"] + queue
    )
    quiet = RawHTTP(server.port, timeout=30)
    holder = start_blocked_request(server, token)  # occupies the only blocking thread
    late_token = f"{token}-late"
    late = RawHTTP(server.port, timeout=30)
    try:
        late.send(build_request("GET", f"/block?token={late_token}", port=server.port))
        assert quiet.wait_closed(timeout=20), "the server should close a silent connection"
        release(server, token)
        assert holder.read_response().status == 200
        resp = late.read_response()
        assert resp.status == 503, f"the late request was not answered from the queue: {resp}"
        assert resp.header("Retry-After") is not None
        assert not server.marker(f"started-{late_token}").exists(), "the expired request ran"
        assert_serves(server)
    finally:
        release(server, late_token)
        holder.close()
        late.close()
        quiet.close()


def test_queue_timeout_answers_while_every_thread_is_stuck(server_factory, token):
    """The only thread is stuck in the app and stays stuck: a queued request must still
    get its 503 once --request-queue-timeout has passed, not wait in silence for as long
    as the app is stuck, and the shedding is logged."""
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--request-queue-timeout", "0.5"]
    )
    holder = start_blocked_request(server, token)
    late_token = f"{token}-late"
    late = RawHTTP(server.port, timeout=20)
    try:
        late.send(build_request("GET", f"/mark?token={late_token}", port=server.port))
        resp = late.read_response()  # the holder is still blocked
        assert resp.status == 503, resp
        assert resp.header("Retry-After") is not None
        assert late.wait_closed()
        log = server.wait_for_log("waited over 0.5s for a blocking thread")
        line = next(ln for ln in log.splitlines() if "waited over 0.5s" in ln)
        assert "other workers" not in line, line  # there are none
    finally:
        release(server, token)
        late.close()
    assert holder.read_response().status == 200
    holder.close()
    assert not server.marker(f"ran-{late_token}").exists(), "the expired request ran"
    assert_serves(server)


def test_every_refusal_is_reported_by_the_time_the_worker_stops(server_factory, token):
    """Refusals are logged in batches (one warning per 10 s); the tail of a burst must not
    be lost when nothing follows it."""
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--request-queue-size", "1"]
    )
    conns = _open_keep_alive(server, 6)  # open before the queue fills
    holder = start_blocked_request(server, token)
    results = {}

    def reader(i, c):
        try:
            results[i] = c.read_response().status
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = repr(e)

    threads = [threading.Thread(target=reader, args=(i, c), daemon=True) for i, c in enumerate(conns)]
    try:
        for c in conns:
            c.send(build_request("GET", "/hello", port=server.port))
        for th in threads:
            th.start()
        # One request takes the queue's only slot; every other one is refused.
        wait_until(lambda: list(results.values()).count(503) == len(conns) - 1, 20, "the refusals")
    finally:
        release(server, token)
    for th in threads:
        th.join(timeout=30)
    assert sorted(results.values()) == [200] + [503] * (len(conns) - 1), results
    assert holder.read_response().status == 200
    for c in conns + [holder]:
        c.close()
    assert server.stop().returncode == 0
    counts = [int(n) for n in re.findall(r"answered 503 to (\d+) request\(s\) since", server.log())]
    assert sum(counts) == len(conns) - 1, (counts, server.log())


def test_client_error_lines_are_rate_limited_and_counted(server_factory):
    """A client sending garbage must not flood the log: 20 lines per 10 s, the rest
    counted in one line (at the latest when the worker stops)."""
    server = server_factory.start()
    for _ in range(30):
        with RawHTTP(server.port) as c:
            c.send(b"BAD REQUEST LINE\r\n\r\n", tolerate_close=True)
            assert c.read_response().status == 400
    assert_serves(server)
    assert server.stop().returncode == 0
    log = server.log()
    written = log.count("bad request from")
    left_out = sum(int(n) for n in re.findall(r"(\d+) more line\(s\) about bad requests", log))
    assert written <= 20, written
    assert written + left_out == 30, (written, left_out)


# ---------------------------------------------------------------- coalesced writes


def _fast_then_held_then_slow(server, token) -> None:
    """One thread; while it is blocked, 60 fast requests, then A (/mark), then B (a /block
    that waits for the test) are queued, in that order (each proven read by the server
    before the next is sent). The fast ones make the thread's recent app time short, B
    waiting behind A makes the thread hold A's response, and B then blocks the thread:
    A's response must still arrive."""
    holder = start_blocked_request(server, token)
    conns = [holder]
    slow_token = f"{token}-b"
    try:
        fast = []
        for _ in range(60):
            c = RawHTTP(server.port, timeout=30)
            conns.append(c)
            c.send(build_request("GET", "/hello", port=server.port))
            fast.append(c)
        wait_until(lambda: all(server_has_read(c) for c in fast), 20, "the fast requests to be queued")
        a = RawHTTP(server.port, timeout=30)
        conns.append(a)
        a.send(build_request("GET", f"/mark?token={token}-a", port=server.port))
        wait_until(lambda: server_has_read(a), 20, "A to be queued")
        b = RawHTTP(server.port, timeout=30)
        conns.append(b)
        b.send(build_request("GET", f"/block?token={slow_token}", port=server.port))
        wait_until(lambda: server_has_read(b), 20, "B to be queued")
        release(server, token)
        assert holder.read_response().status == 200
        for c in fast:
            assert c.read_response().status == 200
        wait_for_file(server.marker(f"started-{slow_token}"), timeout=20)
        resp = a.read_response()  # B is still blocked: the thread cannot be writing this
        assert resp.status == 200 and resp.body == f"ran {token}-a".encode(), resp
        assert not server.marker(f"finished-{slow_token}").exists()
        release(server, slow_token)
        assert b.read_response().status == 200
        assert a.request("GET", "/hello").status == 200, "the held connection stays usable"
    finally:
        release(server, slow_token)
        for c in conns:
            c.close()


def test_held_response_is_not_kept_waiting_by_a_slow_next_request(server_factory, token):
    """Under load a blocking thread may hold a finished small response to write it with the
    next ones (docs/architecture.md). When the next request is slow, the event loop writes
    the held response: the client never waits for someone else's request.

    The thread may also write A itself (when more than 500 us passed between A and B, on a
    busy machine), so the scenario is repeated until the loop's path was taken (its debug
    line); every attempt checks that A was answered while B was blocked. With the loop's
    bound removed this test fails (A never arrives while B blocks)."""
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--log-level", "debug"]
    )
    for attempt in range(6):
        _fast_then_held_then_slow(server, f"{token}-{attempt}")
        if "held past the bound" in server.log():
            break
    assert_serves(server)
    if "held past the bound" not in server.log():
        # Holding depends on the app's recent wall time per request and a 500 us window:
        # on a starved machine neither holds. Every attempt above still checked that A
        # was answered while B was blocked.
        pytest.skip("the machine was too busy for the thread to hold A's response in 6 attempts")


# ---------------------------------------------------------------- boundaries (issue 12)


@pytest.mark.parametrize("frontdoor", ["binary", "python"])
def test_exception_in_a_worker_ends_it_with_exit_and_a_logged_reason(server_factory, frontdoor):
    """A C++ exception in a worker (here: its listening socket is gone when it sets up)
    ends that worker with _exit and a logged reason: no abort, and no unwinding into the
    master's frames (under `python -m appserver`, the app's atexit handlers would run in
    the child)."""
    server = server_factory.start(
        "listener_gone_app:app", ["--lazy-apps"], frontdoor=frontdoor, wait=False
    )
    server.wait_for_log("worker 0: while starting or stopping: ", timeout=30)
    server.wait_for_log("exited with code 70", timeout=30)
    server.stop()
    log = server.log()
    assert "Aborted" not in log and "terminate called" not in log, log
    assert not list(server.state_dir.glob("atexit-*")), "atexit handlers ran in a worker"


def test_a_process_the_app_starts_holds_no_client_connection(server_factory):
    """Client sockets are close-on-exec: what the app runs (os.system, subprocess with
    close_fds=False) does not inherit the worker's connections."""
    server = server_factory.start("fd_leak_app:app", probe="/")
    with RawHTTP(server.port) as other:  # another client's connection is open meanwhile
        other.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        resp = http_get(server.port, "/")
    assert resp.status == 200, resp
    report = json.loads(resp.body)
    assert report["connections"], report  # the check can see the worker's connections
    assert report["leaked"] == [], report
