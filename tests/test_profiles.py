"""Execution profiles: what each one asks a cluster for, checked without a cluster.

SLURM: Snakemake runs the paper DAG with the real slurm executor plugin, but the first `sbatch`,
`sinfo` and `sacct` on PATH are fakes: sbatch records its arguments and prints a job id, sinfo
names a default partition, sacct reports every job COMPLETED; Snakemake then finds no outputs and
stops. Kubernetes: Snakemake runs with the real kubernetes executor plugin in a wrapper that
replaces the kubernetes client's API objects, so the V1Job bodies the plugin builds are recorded
instead of sent (and, in one test, their container command is run the way a pod would run it).
Each executor is run twice: with only the data present (train, train_classifier are ready), and
with models, classifier, reference and half the sample sets present (sample, evaluate,
real_data_floor are ready). Every expected request is read from the profile under test.
"""

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FMNIST_DEBIAN, ROOT, copy_project

PROFILES = ROOT / "workflow" / "profiles"
GPU_RULES = {"train", "sample"}
READY = {"data": {"train", "train_classifier"}, "models": {"sample", "evaluate", "real_data_floor"}}
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


def put_inputs(root: Path, stage, outputs):
    """Stand-ins for finished jobs: the data; for "models" also the model, classifier, reference
    and every other sample set, so that sample, evaluate and real_data_floor jobs are ready."""
    done = {"fashion_mnist": outputs["fashion_mnist"]}
    if stage == "models":
        done.update({rule: outputs[rule] for rule in ("train", "train_classifier", "reference_features")})
        done["sample"] = sorted(outputs["sample"])[::2]
    data_time = time.time() - 100  # the data is older than everything made from it
    for rule, files in done.items():
        for f in files:
            path = root / f
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"stand-in")
            stamp = data_time if rule == "fashion_mnist" else data_time + 50
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
    run = snakemake(["--summary", "--config", "scale=paper"], copy_project(tmp_path_factory.mktemp("summary") / "p"))
    assert run.returncode == 0, run.stderr[-3000:]
    files = {}
    for row in (line.split("\t") for line in run.stdout.splitlines()[1:] if line.strip()):
        files.setdefault(row[2], []).append(row[0])
    return files


def submit_both_stages(tmp_path_factory, paper_outputs, env, command, inputs_on_volume=False):
    """Run `command(volume)` for both stages at once, each in its own project copy whose fakes
    append to their own record file; {stage: ([records], Snakemake's stderr)}."""
    started = {}
    for stage in READY:
        project = copy_project(tmp_path_factory.mktemp(stage) / "project")
        volume = project.parent / "volume"  # stands in for the persistent volume's mount path
        put_inputs(volume if inputs_on_volume else project, stage, paper_outputs)
        record, stderr = project.parent / "record.jsonl", project.parent / "stderr.txt"
        record.touch()
        with open(stderr, "w") as err:
            process = subprocess.Popen(command(volume), cwd=project, stdout=subprocess.DEVNULL, stderr=err,
                                       env={**env, "FAKE_RECORD": str(record)})
        started[stage] = process, record, stderr
    results = {}
    for stage, (process, record, stderr) in started.items():
        process.wait(timeout=180)
        results[stage] = [json.loads(line) for line in record.read_text().splitlines()], stderr.read_text()
    return results


@pytest.fixture(scope="module")
def sbatch_calls(tmp_path_factory, paper_outputs, fake_env):
    """{rule: [sbatch options of each of its jobs]} from the data and the models run."""
    def command(volume):  # --latency-wait 0: the fake cluster writes no outputs; stop when that is seen
        return [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", "--config", "scale=paper",
                "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "0"]

    calls = {}
    for stage, (records, stderr) in submit_both_stages(tmp_path_factory, paper_outputs, fake_env, command).items():
        assert "completed successfully, but some output files are missing" in stderr, stderr[-3000:]
        submitted = [sbatch_options(argv) for argv in records]
        rules = [job_facts(options["--wrap"])[0] for options in submitted]
        assert set(rules) >= READY[stage], (stage, rules)
        for rule, options in zip(rules, submitted):
            calls.setdefault(rule, []).append(options)
    return calls


@pytest.fixture(scope="module")
def kubernetes_jobs(tmp_path_factory, paper_outputs, fake_env, kubernetes_wrapper):
    """{rule: [(namespace, V1Job body as a dict)]} from the data and the models run."""
    def command(volume):
        return kubernetes_command(kubernetes_wrapper, "--config", "scale=paper", "--default-storage-prefix", str(volume))

    jobs = {}
    for stage, (records, stderr) in submit_both_stages(tmp_path_factory, paper_outputs, fake_env, command,
                                                       inputs_on_volume=True).items():
        assert "At least one job did not complete successfully" in stderr, stderr[-3000:]
        rules = [job_facts(pod(record["body"])["containers"][0]["args"][-1])[0] for record in records]
        assert set(rules) >= READY[stage], (stage, rules)
        for rule, record in zip(rules, records):
            jobs.setdefault(rule, []).append((record["namespace"], record["body"]))
    return jobs


# --- the rules' own declarations, and the local profile -------------------------------------

def test_paper_dag_dry_run_with_slurm_profile_is_fast_and_only_gpu_rules_ask_for_a_gpu(tmp_path):
    project = copy_project(tmp_path / "project")
    start = time.perf_counter()
    run = snakemake(["-n", "--cores", "all", "--config", "scale=paper", "--profile", "workflow/profiles/slurm"],
                    project)
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stderr[-3000:]
    assert seconds < 10, seconds
    gpus = {}  # rule: the gpu values of its jobs (None: no gpu resource)
    for rule, block in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", run.stdout + run.stderr, flags=re.M | re.S):
        gpu = re.search(r"^\s+resources: .*\bgpu=(\d+)", block, flags=re.M)
        gpus.setdefault(rule, set()).add(gpu and gpu.group(1))
    assert {rule for rule, values in gpus.items() if values == {"1"}} == GPU_RULES
    assert all(values == {None} for rule, values in gpus.items() if rule not in GPU_RULES)


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
    cpu_rules = set(sbatch_calls) - GPU_RULES
    assert cpu_rules >= {"train_classifier", "evaluate", "real_data_floor"}
    for rule in cpu_rules:
        wanted = {**slurm["default-resources"], **slurm["set-resources"].get(rule, {})}
        for options in sbatch_calls[rule]:
            assert not any(key.startswith(("--gpus", "--gres")) for key in options), (rule, options)
            assert options["-p"] in slurm_partitions(with_gpus=False)
            assert options["--cpus-per-task"] == str(slurm["set-threads"].get(rule, 1))
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
    assert set(kubernetes_jobs) - GPU_RULES >= {"train_classifier", "evaluate", "real_data_floor"}
    for rule, jobs in kubernetes_jobs.items():
        mem_mb = {**k8s["default-resources"], **k8s["set-resources"].get(rule, {})}["mem_mb"]
        threads = k8s["set-threads"].get(rule, 1)
        for _, body in jobs:
            container = pod(body)["containers"][0]
            limits = container["resources"]["limits"]
            assert limits["cpu"] == f"{threads * 1000}m"
            assert limits["memory"] == f"{mem_mb}M"
            if rule not in GPU_RULES:
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
    run = subprocess.run(kubernetes_command(kubernetes_wrapper, "fashion_mnist", "--default-storage-prefix", str(volume)),
                         cwd=project, env=env, capture_output=True, text=True, timeout=180)
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
