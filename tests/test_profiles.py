"""Execution profiles: what each one asks a cluster for, checked without a cluster.

SLURM: Snakemake runs the paper DAG with the real slurm executor plugin, but the first `sbatch`,
`sinfo` and `sacct` on PATH are fakes: sbatch records its arguments and prints a job id, sinfo
names a default partition, sacct reports every job COMPLETED; Snakemake then finds no outputs and
stops. Kubernetes: Snakemake runs with the real kubernetes executor plugin in a wrapper that
replaces the kubernetes client's API objects, so the V1Job bodies the plugin builds are recorded
instead of sent (and, in one test, their container command is run the way a pod would run it).
Each executor runs once, with every output of the paper DAG in place but the few it is asked for:
a train, sample sets, evaluations and a real-data floor. Every expected request is read from the
profile under test.
"""

import base64
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FMNIST_DEBIAN, ROOT, copy_project, stage_paper_inputs

PROFILES = ROOT / "workflow" / "profiles"
GPU_RULES = {"train", "sample"}
CPU_RULES = {"fashion_mnist", "train_classifier", "reference_features", "evaluate", "real_data_floor",
             "aggregate_metrics", "report"}
# the paper DAG's other rules: CIFAR-10 sample sets are drawn in shards and scored with Inception
PAPER_GPU_RULES = GPU_RULES | {"sample_shard", "inception_reference", "evaluate_inception"}
PAPER_CPU_RULES = CPU_RULES | {"cifar10", "merge_samples"}
# The outputs each submission run asks for; every other output of the paper DAG is put in place, so
# exactly their jobs are ready. Snakemake lists outputs in DAG order: the last train's outputs feed
# none of the first sample sets, and evaluations 1 and 2 read sample sets that stay in place
# (evaluation 0 most likely reads the missing sample set 0, and would wait for it).
TARGETS = {"train": slice(-1, None), "sample": slice(0, 1), "evaluate": slice(1, 3), "real_data_floor": slice(0, 1)}
FAKE_DEFAULT_PARTITION = "site_default"  # what the fake sinfo marks with *; the profile must not need it

FAKES = {
    "sbatch": """\
import json, os, sys
with open(os.environ["FAKE_RECORD"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
print(1000 + sum(1 for _ in open(os.environ["FAKE_RECORD"])))
""",
    "sacct": """\
import os, sys
if "--name" in sys.argv:  # the status query; otherwise it is the account guess, which finds none
    for n in range(sum(1 for _ in open(os.environ["FAKE_RECORD"]))):
        print(f"{1001 + n}|COMPLETED")
""",
    "sinfo": f'print("PARTITION\\n{FAKE_DEFAULT_PARTITION}*\\ngpu")\n',
    # the fs storage plugin moves files with rsync, which test machines need not have
    "rsync": """\
import os, shutil, sys
*options, source, target = sys.argv[1:]
os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
if os.path.isdir(source):
    shutil.copytree(source, target, dirs_exist_ok=True)
else:
    shutil.copy2(source, target)
""",
}

KUBERNETES_WRAPPER = """\
import json, os, re, subprocess, sys, tempfile

import kubernetes
from kubernetes.client import ApiClient, V1Job, V1JobStatus, V1PodList

RUN_PODS = os.environ.get("FAKE_K8S_RUN_PODS") == "1"
exit_codes = {}


def run_pod(body):
    # As a kubelet would, in an empty working directory. The image already holds the storage
    # plugin, so the pip install that fetches it (from an index) is left out.
    [container] = body.spec.template.spec.containers
    command = re.sub(r"^pip install --target \\S+ [^&]*&& ", "", container.args[-1])
    return subprocess.run([*container.command, "-c", command], cwd=tempfile.mkdtemp()).returncode


class RecordingBatchApi:
    def create_namespaced_job(self, namespace, body):
        with open(os.environ["FAKE_RECORD"], "a") as log:
            record = {"namespace": namespace, "body": ApiClient().sanitize_for_serialization(body)}
            log.write(json.dumps(record) + "\\n")
        if RUN_PODS:
            exit_codes[body.metadata.name] = run_pod(body)
        return body

    def read_namespaced_job_status(self, name, namespace):
        done = exit_codes.get(name) == 0
        return V1Job(status=V1JobStatus(succeeded=1) if done else V1JobStatus(failed=1))

    def delete_namespaced_job(self, *args, **kwargs):
        pass


class QuietCoreApi:
    def create_namespaced_secret(self, *args, **kwargs):
        pass

    def delete_namespaced_secret(self, *args, **kwargs):
        pass

    def list_namespaced_pod(self, *args, **kwargs):
        return V1PodList(items=[])

    def delete_namespaced_pod(self, *args, **kwargs):
        pass


kubernetes.config.load_kube_config = lambda *args, **kwargs: None
kubernetes.client.BatchV1Api = RecordingBatchApi
kubernetes.client.CoreV1Api = QuietCoreApi

from snakemake.cli import main

main(sys.argv[1:])
"""


def profile(name):
    return yaml.safe_load((PROFILES / name / "config.v8+.yaml").read_text())


def slurm_partitions(with_gpus):
    """Names of the profile's partitions that have (or have no) GPUs."""
    slurm = profile("slurm")
    partitions = yaml.safe_load((PROFILES / "slurm" / slurm["slurm-partition-config"]).read_text())["partitions"]
    return {name for name, limits in partitions.items() if (limits.get("max_gpu", 0) > 0) == with_gpus}


def snakemake(args, cwd, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def kubernetes_command(wrapper, *args):
    return [sys.executable, str(wrapper), "--profile", "workflow/profiles/kubernetes",
            "--seconds-between-status-checks", "1", *args]


def sbatch_options(argv):
    """`sbatch` arguments as {option: value}; a flag without a value maps to True."""
    options, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
            options[key] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            options[arg] = argv[i + 1]
            i += 1
        else:
            options[arg] = True
        i += 1
    return options


def option_values(tokens, option):
    i = tokens.index(option) + 1
    values = []
    while i < len(tokens) and not tokens[i].startswith("--"):
        values.append(tokens[i])
        i += 1
    return values


def job_facts(command):
    """Rule, --cores and per-rule thread overrides that the job's own Snakemake call receives
    (the last `python -m snakemake` in the command; a pod first deploys the sources)."""
    tokens = shlex.split(command)
    args = tokens[max(i for i, t in enumerate(tokens) if t == "snakemake" and tokens[i - 1] == "-m") + 1:]
    encoded = option_values(args, "--set-threads")
    threads = dict(base64.b64decode(v.removeprefix("base64//")).decode().split("=") for v in encoded)
    return option_values(args, "--allowed-rules")[0], option_values(args, "--cores")[0], threads


def pod(body):
    return body["spec"]["template"]["spec"]


def targets_and_done(outputs):
    targets = [f for rule, part in TARGETS.items() for f in outputs[rule][part]]
    done = {rule: [f for f in files if f not in targets] for rule, files in outputs.items()}
    return targets, done


def put_in_place(root: Path, done):
    data_time = time.time() - 100  # the data is older than everything made from it
    for rule, files in done.items():
        stamp = data_time if rule == "fashion_mnist" else data_time + 50
        for f in files:
            path = root / f
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"stand-in")
            os.utime(path, (stamp, stamp))


@pytest.fixture(scope="module")
def fake_env(tmp_path_factory):
    """os.environ with the fake cluster tools first on PATH."""
    fake_bin = tmp_path_factory.mktemp("fake_bin")
    for name, code in FAKES.items():
        (fake_bin / name).write_text(f"#!{sys.executable}\n{code}")
        (fake_bin / name).chmod(0o755)
    return {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def kubernetes_wrapper(tmp_path_factory):
    wrapper = tmp_path_factory.mktemp("fake_kubernetes") / "run_snakemake.py"
    wrapper.write_text(KUBERNETES_WRAPPER)
    return wrapper


@pytest.fixture(scope="module")
def paper_outputs(tmp_path_factory):
    """{rule: [output files]} of the paper DAG, as Snakemake lists them."""
    project = copy_project(tmp_path_factory.mktemp("summary") / "p")
    run = snakemake(["--summary", "--config", "scale=paper", *stage_paper_inputs(project)], project)
    assert run.returncode == 0, run.stderr[-3000:]
    files = {}
    for row in (line.split("\t") for line in run.stdout.splitlines()[1:] if line.strip()):
        files.setdefault(row[2], []).append(row[0])
    return files


def submit(tmp_path, paper_outputs, env, command, inputs_on_volume=False):
    """Run `command(volume) + targets` at paper scale (stand-ins for its staged files) in a project
    copy, everything else in place; the fakes' records (one JSON line per submitted job) and
    Snakemake's stderr."""
    project = copy_project(tmp_path / "project")
    volume = tmp_path / "volume"  # stands in for the persistent volume's mount path
    targets, done = targets_and_done(paper_outputs)
    put_in_place(volume if inputs_on_volume else project, done)
    record = tmp_path / "record.jsonl"
    record.touch()
    run = subprocess.run([*command(volume), *targets, "--config", "scale=paper", *stage_paper_inputs(project)],
                         cwd=project, env={**env, "FAKE_RECORD": str(record)},
                         capture_output=True, text=True, timeout=180)
    return [json.loads(line) for line in record.read_text().splitlines()], run.stderr


@pytest.fixture(scope="module")
def sbatch_calls(tmp_path_factory, paper_outputs, fake_env):
    """{rule: [sbatch options of each of its jobs]}."""
    def command(volume):  # --latency-wait 0: the fake cluster writes no outputs; stop when that is seen
        return [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm",
                "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "0"]

    records, stderr = submit(tmp_path_factory.mktemp("slurm"), paper_outputs, fake_env, command)
    assert "completed successfully, but some output files are missing" in stderr, stderr[-3000:]
    calls = {}
    for options in map(sbatch_options, records):
        calls.setdefault(job_facts(options["--wrap"])[0], []).append(options)
    assert set(calls) == set(TARGETS), sorted(calls)
    return calls


@pytest.fixture(scope="module")
def kubernetes_jobs(tmp_path_factory, paper_outputs, fake_env, kubernetes_wrapper):
    """{rule: [(namespace, V1Job body as a dict)]}."""
    def command(volume):
        return kubernetes_command(kubernetes_wrapper, "--default-storage-prefix", str(volume))

    records, stderr = submit(tmp_path_factory.mktemp("k8s"), paper_outputs, fake_env, command, inputs_on_volume=True)
    assert "At least one job did not complete successfully" in stderr, stderr[-3000:]
    jobs = {}
    for record in records:
        rule = job_facts(pod(record["body"])["containers"][0]["args"][-1])[0]
        jobs.setdefault(rule, []).append((record["namespace"], record["body"]))
    assert set(jobs) == set(TARGETS), sorted(jobs)
    return jobs


# --- the rules' own declarations, and the local profile -------------------------------------

def test_paper_dag_dry_run_with_slurm_profile_is_fast_and_only_gpu_rules_ask_for_a_gpu(tmp_path):
    project = copy_project(tmp_path / "project")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = snakemake(["-n", "--cores", "all", "--profile", "workflow/profiles/slurm", "--config", "scale=paper",
                     *stage_paper_inputs(project)], project)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert run.returncode == 0, run.stderr[-3000:]
    # CPU seconds: what the DAG costs, whatever else the (shared) test machine is doing
    assert (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) < 10
    gpus = {}  # rule: the gpu values of its jobs (None: no gpu resource)
    for rule, block in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", run.stdout + run.stderr, flags=re.M | re.S):
        gpu = re.search(r"^\s+resources: .*\bgpu=(\d+)", block, flags=re.M)
        gpus.setdefault(rule, set()).add(gpu and gpu.group(1))
    assert all(gpus[rule] == {"1"} for rule in PAPER_GPU_RULES)
    assert set(gpus) >= PAPER_CPU_RULES and all(gpus[rule] == {None} for rule in PAPER_CPU_RULES)
    # the cheap table/claims/report jobs run where Snakemake runs, never queued on the cluster (a dry
    # run prints local and cluster rules alike, so the declaration itself is checked)
    declared = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", (project / "Snakefile").read_text(), flags=re.M)
    assert set(re.findall(r"\w+", declared.group(1))) == {"all", "aggregate_metrics", "claims", "report"}
    assert {"aggregate_metrics", "claims", "report"} <= set(gpus)  # rules of this DAG, by those names


def test_default_profile_limits_gpu_jobs_to_one_gpu(tmp_path):
    assert profile("default")["resources"] == {"gpu": 1}
    run = snakemake(["-n", "--profile", "workflow/profiles/default", "--config", "scale=smoke"],
                    copy_project(tmp_path / "project"))
    assert run.returncode == 0, run.stderr[-3000:]


# --- SLURM ----------------------------------------------------------------------------------

def test_slurm_gpu_jobs_request_one_gpu_with_cpus_per_gpu(sbatch_calls):
    slurm = profile("slurm")
    for rule in GPU_RULES:
        wanted = slurm["set-resources"][rule]
        threads = slurm["set-threads"][rule]
        for options in sbatch_calls[rule]:
            assert options["--gpus"] == "1", rule
            assert options["-p"] in slurm_partitions(with_gpus=True)
            assert options["--cpus-per-gpu"] == str(threads)
            assert "--cpus-per-task" not in options
            assert options["--mem"] == str(wanted["mem_mb"])
            assert options["-t"] == str(wanted["runtime"])


def test_slurm_cpu_jobs_request_no_gpu_and_their_threads_as_cpus(sbatch_calls):
    slurm = profile("slurm")
    cpu_rules = set(sbatch_calls) & CPU_RULES
    assert cpu_rules >= {"evaluate", "real_data_floor"}
    for rule in cpu_rules:
        wanted = {**slurm["default-resources"], **slurm["set-resources"].get(rule, {})}
        for options in sbatch_calls[rule]:
            assert not any(key.startswith(("--gpus", "--gres")) for key in options), (rule, options)
            assert options["-p"] in slurm_partitions(with_gpus=False)
            assert options["--cpus-per-task"] == str(slurm["set-threads"].get(rule, 1))  # 1: no threads:
            assert options["--mem"] == str(wanted["mem_mb"])
            assert options["-t"] == str(wanted["runtime"])


def test_slurm_jobs_use_their_allocation_on_the_node(sbatch_calls):
    slurm = profile("slurm")
    for calls in sbatch_calls.values():
        for options in calls:
            _, cores, threads = job_facts(options["--wrap"])
            assert cores == "all"  # not capped by the login node
            assert {rule: int(n) for rule, n in threads.items()} == slurm["set-threads"]


def test_slurm_profile_leaves_managed_options_out_of_slurm_extra():
    slurm = profile("slurm")
    assert not any("slurm_extra" in r for r in [slurm["default-resources"], *slurm["set-resources"].values()])


# --- Kubernetes -----------------------------------------------------------------------------

def test_kubernetes_profile_keeps_storage_on_the_persistent_volume():
    k8s = profile("kubernetes")
    [volume] = k8s["kubernetes-persistent-volumes"]
    assert k8s["default-storage-provider"] == "fs"
    assert k8s["default-storage-prefix"] == volume.split(":")[1]


def test_kubernetes_profile_resolves_the_whole_paper_dag_on_the_volume(tmp_path):
    """Every input and output lives on the volume, so a rule must not take a repository file as an
    input (pods have the workflow's sources locally: mark such inputs local(), or pass params)."""
    project = copy_project(tmp_path / "project")
    run = snakemake(["-n", "-q", "--profile", "workflow/profiles/kubernetes", "--default-storage-prefix",
                     str(tmp_path / "volume"), "--config", "scale=paper", *stage_paper_inputs(project)], project)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


def test_kubernetes_image_is_tagged_with_the_package_version():
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert profile("kubernetes")["container-image"].rsplit(":", 1)[1] == version


def test_kubernetes_jobs_use_own_image_namespace_and_persistent_volume(kubernetes_jobs):
    k8s = profile("kubernetes")
    claim, mount = k8s["kubernetes-persistent-volumes"][0].split(":")
    for jobs in kubernetes_jobs.values():
        for namespace, body in jobs:
            assert namespace == k8s["kubernetes-namespace"]
            [container] = pod(body)["containers"]
            assert container["image"] == k8s["container-image"]
            volumes = {v["name"]: v for v in pod(body)["volumes"]}
            assert volumes[claim]["persistentVolumeClaim"]["claimName"] == claim
            assert {"name": claim, "mountPath": mount} in container["volumeMounts"]


def test_kubernetes_gpu_jobs_have_gpu_limits_and_tolerate_gpu_nodes(kubernetes_jobs):
    k8s = profile("kubernetes")
    assert k8s["default-resources"]["gpu_manufacturer"] == "nvidia"
    for rule in GPU_RULES:
        for _, body in kubernetes_jobs[rule]:
            resources = pod(body)["containers"][0]["resources"]
            assert resources["limits"]["nvidia.com/gpu"] == "1"
            assert resources["requests"]["nvidia.com/gpu"] == "1"  # extended resources: request = limit
            assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                    "effect": "NoSchedule"} in pod(body)["tolerations"]


def test_kubernetes_cpu_and_memory_follow_the_profile(kubernetes_jobs):
    k8s = profile("kubernetes")
    assert set(kubernetes_jobs) & CPU_RULES >= {"evaluate", "real_data_floor"}
    for rule in set(kubernetes_jobs) & (GPU_RULES | CPU_RULES):
        mem_mb = {**k8s["default-resources"], **k8s["set-resources"].get(rule, {})}["mem_mb"]
        threads = k8s["set-threads"].get(rule, 1)  # 1: rules without threads:
        for _, body in kubernetes_jobs[rule]:
            container = pod(body)["containers"][0]
            limits = container["resources"]["limits"]
            assert limits["cpu"] == f"{threads * 1000}m"
            assert limits["memory"] == f"{mem_mb}M"
            if rule in CPU_RULES:
                assert "nvidia.com/gpu" not in limits and not pod(body).get("tolerations")
            _, cores, overrides = job_facts(container["args"][-1])
            assert cores == "all" and int(overrides[rule]) == threads


def test_kubernetes_job_runs_in_an_empty_pod_and_leaves_its_output_on_the_volume(
        tmp_path, fake_env, kubernetes_wrapper):
    """The data job end to end: controller -> V1Job -> its command in an empty directory that
    sees only the volume -> output on the volume -> the controller accepts it."""
    if not (FMNIST_DEBIAN / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    project = copy_project(tmp_path / "project")
    # Snakemake ships to pods the files `git ls-files` lists; index the copy as envs/Dockerfile does
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    volume = tmp_path / "volume"
    env = {**fake_env, "FAKE_RECORD": str(tmp_path / "jobs.jsonl"), "FAKE_K8S_RUN_PODS": "1"}
    command = kubernetes_command(kubernetes_wrapper, "fashion_mnist", "--default-storage-prefix", str(volume))
    run = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-4000:]
    with np.load(volume / "results" / "data" / "fashion_mnist.npz") as data:
        assert sum(data[name].size for name in data.files) > 70_000
    assert not (project / "results").exists()  # nothing was written beside the controller


# --- the image the Kubernetes jobs run ------------------------------------------------------

def test_dockerfile_installs_the_pinned_requirements_and_copies_existing_files():
    text = (ROOT / "envs" / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = [" ".join(line.split()) for line in text.splitlines() if line.strip() and line[0] != "#"]
    copies = [i.split()[1:-1] for i in instructions if i.startswith("COPY ")]
    assert copies and all((ROOT / src).exists() for sources in copies for src in sources)
    runs = " ".join(i for i in instructions if i.startswith("RUN "))
    assert "pip install -r envs/requirements.txt" in runs
    assert "rsync" in runs and "git" in runs  # the fs storage plugin and Snakemake's source deployment use them


def test_make_run_loads_the_default_profile_where_there_is_an_nvidia_gpu(tmp_path):
    """`make run` passes the default workflow profile (gpu: 1) only where nvidia-smi exists: there GPU
    jobs take turns on the device; on a CPU-only machine they keep running side by side."""
    import shutil

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (fake / "nvidia-smi").chmod(0o755)

    def snakemake_line(path):
        run = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PATH": path})
        assert run.returncode == 0, run.stderr
        return next(line for line in run.stdout.splitlines() if "snakemake --cores" in line)

    assert "--workflow-profile workflow/profiles/default" in snakemake_line(f"{fake}:/usr/bin:/bin")
    if shutil.which("nvidia-smi", path="/usr/bin:/bin") is None:
        assert "--workflow-profile" not in snakemake_line("/usr/bin:/bin")
