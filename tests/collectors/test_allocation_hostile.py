"""Allocation sources read files and command output others control: hostile input gives the
source's own one-line error (or nothing), never a TypeError that costs the node its attribution."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from gpufleet.allocation import groups, kubernetes, slurm, statefile

JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**12) | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
                    max_leaves=25)
KEYS = st.sampled_from(["gpus", "allocations", "containers", "users", "uuid", "physical_gpu", "gpu", "type",
                        "podResources", "pod_resources", "devices", "deviceIds", "resourceName", "name",
                        "namespace", "nvidia.com/gpu", "0", "1.0"])
SHAPED = st.recursive(st.none() | st.integers(-5, 9) | st.sampled_from(["²", "nvidia.com/gpu", "3", "x", ""]),
                      lambda kids: st.lists(kids, max_size=3) | st.dictionaries(KEYS, kids, max_size=5),
                      max_leaves=30)


@pytest.mark.parametrize("doc", [
    {"gpus": {"0": {"containers": 5, "users": {"alice": 1}}}},
    {"gpus": {"0": {"containers": "thesis"}}},
    {"gpus": {"0": {"containers": ["c"], "physical_gpu": "²"}}},
    {"allocations": [{"gpu": "²"}]},
])
def test_state_file_hostile_shapes_are_named(doc: dict[str, Any]) -> None:
    try:
        statefile.parse(json.dumps(doc))
    except statefile.StateFileError as e:
        assert "expected a list" in str(e) or "needs" in str(e)


def test_state_file_containers_not_a_list() -> None:
    with pytest.raises(statefile.StateFileError, match=r"containers: expected a list, got int"):
        statefile.parse(json.dumps({"gpus": {"0": {"containers": 5}}}))


def test_pod_resources_hostile_shapes() -> None:
    with pytest.raises(kubernetes.PodResourcesError, match="containers: expected a list, got int"):
        kubernetes.parse_pod_resources(json.dumps({"podResources": [{"name": "p", "containers": 3}]}))
    bad_id = {"podResources": [{"name": "p", "namespace": "n", "containers": [
        {"name": "c", "devices": [{"resourceName": "nvidia.com/gpu", "deviceIds": ["²"]}]}]}]}
    (g,) = kubernetes.parse_pod_resources(json.dumps(bad_id))
    assert g.gpu is None and g.uuid == "²"


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, SHAPED))
def test_state_file_parser_total(doc: Any) -> None:
    try:
        statefile.parse(json.dumps(doc))
    except statefile.StateFileError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, SHAPED))
def test_pod_resources_parser_total(doc: Any) -> None:
    try:
        kubernetes.parse_pod_resources(json.dumps(doc))
    except kubernetes.PodResourcesError:
        pass


def test_state_file_deep_nesting_is_an_error_not_a_crash() -> None:
    try:
        statefile.parse("[" * 100_000 + "]" * 100_000)
    except (statefile.StateFileError, RecursionError):
        pass  # RecursionError is a RuntimeError: the collector reports it as the source's error


def test_slurm_huge_ranges_are_refused_quickly() -> None:
    text = ("JobId=1 JobName=x UserId=alice(1000) JobState=RUNNING\n"
            "   Nodes=gpu[0-999999999] CPU_IDs=0 Mem=0 GRES=gpu:8(IDX:0-999999999)\n"
            "   Nodes=r[1-100000]n[1-100000] CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:0)\n"
            "   Nodes=gpu[a-b] CPU_IDs=0 Mem=0 GRES=gpu:1(IDX:0)\n"
            "   Nodes=gpu07 CPU_IDs=0 Mem=0 GRES=gpu:2(IDX:0-1)\n")
    (job,) = slurm.parse_jobs(text)
    assert job.gpus == {"gpu07": [0, 1]}  # the sane line still counts
    with pytest.raises(ValueError):
        slurm.expand_ranges("0-99999999999")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="JobId=NodesGRESgpu:()IDX0123456789-,[]\n x", max_size=200))
def test_slurm_parser_total(text: str) -> None:
    slurm.parse_jobs(text)
    slurm.parse_squeue(text)


def test_unix_groups_survive_a_nul_in_a_user_name() -> None:
    assert groups.UnixGroups().mapping(["a\x00b", "root"]).get("a\x00b") is None


def test_groups_file_alias_bomb_is_refused_at_once() -> None:
    # YAML aliases nesting lists 10^8 deep: spelled out by str() this took hours; a member must be a name.
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdefg", "bcdefgh"):
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(groups.GroupsError, match="expands to more than 200,000 values through its aliases"):
        groups.parse("\n".join(levels))
    with pytest.raises(groups.GroupsError, match="group 'b': expected a list of user names, found a list"):
        groups.parse("\n".join(levels[:2]))
    assert groups.parse("groups:\n  nlp: [alice, bob]\n  vision: {members: [carol]}\n") == {
        "alice": "nlp", "bob": "nlp", "carol": "vision"}


def test_pod_resources_command_with_an_unclosed_quote_names_the_flag() -> None:
    with pytest.raises(kubernetes.PodResourcesError, match=r"^--allocation-pod-resources '\"grpcurl': No closing"):
        kubernetes.PodResourcesSource('"grpcurl')
