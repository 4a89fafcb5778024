rule fashion_mnist:
    output:
        f"{DATA}/fashion_mnist.npz",
    params:
        data_root=config.get("data_root") or "",
        download_dir=f"{DATA}/downloads",
    conda:
        "../../envs/environment.yaml"
    log:
        f"{DATA}/logs/fashion_mnist.log",
    shell:
        "python -m diffrepro.stages.prepare_data --out {output:q} --data-root={params.data_root:q} "
        "--download-dir={params.download_dir:q} 2> {log:q}"


# Paper scale: experiments that declare `dataset: cifar10` (replications/*.yaml) train on it.
rule cifar10:
    output:
        f"{DATA}/cifar10.npz",
    params:
        root=config.get("cifar10_root") or "",
        download_dir=f"{DATA}/downloads",
    conda:
        "../../envs/environment.yaml"
    log:
        f"{DATA}/logs/cifar10.log",
    shell:
        "python -m diffrepro.stages.prepare_cifar10 --out {output:q} --root={params.root:q} "
        "--download-dir={params.download_dir:q} 2> {log:q}"
