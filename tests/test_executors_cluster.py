"""Faults on a Ray cluster of several nodes on this machine (``ray.cluster_utils.Cluster``).

The head node offers no CPU, so every case runs on one of the worker nodes (1 CPU each; the
second also declares a GPU, a resource label only: no GPU is used). A node is killed in the
middle of a run: the case it was running is sent again (``--retries``), or, with no retry
left, becomes an ``error`` row naming the node; cases that finished before are kept.
"""
import os
import threading
import time
from pathlib import Path

import pytest

from ray_support import cases_lines, markers_of, ray_or_skip, sleepy_suite

ray = ray_or_skip()
from ray.cluster_utils import Cluster  # noqa: E402

from harness.results import ResultsDir  # noqa: E402
from harness.runners import run_suites  # noqa: E402

TESTS = Path(__file__).resolve().parent
STORE = 100 * 2**20  # object store per node: results are small


@pytest.fixture(scope="module")
def cluster():
    """Head without CPUs plus two 1-CPU nodes (the second with one GPU label); shut down after."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                         "object_store_memory": STORE})
    try:
        yield made
    finally:
        if ray.is_initialized():
            ray.shutdown()
        made.shutdown()


def fresh_nodes(cluster, gpu=False):
    """Replace every worker node with two fresh ones; returns them."""
    for node in list(cluster.worker_nodes):
        cluster.remove_node(node)
    nodes = [cluster.add_node(num_cpus=1, num_gpus=0, object_store_memory=STORE),
             cluster.add_node(num_cpus=1, num_gpus=1 if gpu else 0, object_store_memory=STORE)]
    cluster.wait_for_nodes()
    return nodes


def run_and_kill(tmp_path, cluster, retries):
    """Two 0 s cases, then two 3 s cases (one per node); the first node dies under its 3 s case."""
    victim, _ = fresh_nodes(cluster)
    markers = tmp_path / f"markers{retries}"
    suite = sleepy_suite(markers, seconds=[0, 3], seeds=[0, 1])
    out = ResultsDir(tmp_path / f"r{retries}")
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("rows", run_suites(
        [suite], "ci", out, progress=False, executor="ray", address=cluster.address, retries=retries)))
    thread.start()
    deadline = time.monotonic() + 120
    while len(markers_of(markers)) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)  # both 3 s cases have started, so both 0 s cases have been collected
    finished_before = {tuple(line["key"]) for line in cases_lines(out.path)}
    cluster.remove_node(victim)
    thread.join(timeout=240)
    assert not thread.is_alive()
    return out, done["rows"], victim.node_id[:8], finished_before


def test_a_case_lost_with_its_node_is_retried_elsewhere_and_nothing_finished_is_lost(tmp_path, cluster):
    out, rows, victim, finished_before = run_and_kill(tmp_path, cluster, retries=1)
    assert finished_before == {("sleepy", "mode=ok,seconds=0", "", 0), ("sleepy", "mode=ok,seconds=0", "", 1)}
    assert set(rows["status"]) == {"ok"} and len(rows) == 4
    lines = cases_lines(out.path)
    assert len(lines) == 4  # every case written once, the finished ones before the loss included
    assert all(victim not in line["node"] for line in lines if "seconds=3" in line["key"][1])
    assert not out.unfinished_attempts()


def test_with_no_retry_left_the_lost_case_is_an_error_row_naming_its_node(tmp_path, cluster):
    out, rows, victim, finished_before = run_and_kill(tmp_path, cluster, retries=0)
    assert len(finished_before) == 2
    errors = rows[rows["status"] == "error"]
    assert len(errors) == 1 and len(rows[rows["status"] == "ok"]) == 3
    message = errors["message"].iloc[0]
    assert f"/{victim}" in message and "attempt 1 on" in message, message
    assert victim in next(line["node"] for line in cases_lines(out.path) if line["rows"][0]["status"] == "error")


def test_gpu_cases_go_to_the_gpu_node_with_device_cuda(tmp_path, cluster):
    _, gpu_node = fresh_nodes(cluster, gpu=True)
    markers = tmp_path / "markers"
    suite = sleepy_suite(markers, seconds=[0], seeds=[0, 1], resources={"gpu": 1})
    out = ResultsDir(tmp_path / "r")
    run_suites([suite], "ci", out, progress=False, executor="ray", address=cluster.address, retries=0)
    seen = markers_of(markers)
    assert len(seen) == 2
    # Ray hands the case its GPU; lipbench runs it as cuda (there is no real GPU here, so the
    # case then fails naming the device; its rows are still labelled cuda)
    assert {m["device"] for m in seen.values()} == {"cuda"} and {m["cuda_visible"] for m in seen.values()} == {"0"}
    assert {line["node"].split("/")[1] for line in cases_lines(out.path)} == {gpu_node.node_id[:8]}
    assert set(out.rows()["device"]) == {"cuda"}
