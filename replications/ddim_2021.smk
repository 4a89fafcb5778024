# DDIM's encode -> decode reconstruction (Song 2021, Sec. 5.4) on the DDPM-trained network.
from diffrepro.datasets import data_file

_DDIM_RECON = PLAN.replications["ddim_2021"]["stages"]["ddim_reconstruction"][SCALE]


rule ddim_reconstruction:
    input:
        model=f"{RES}/models/ddpm_2020/eps_simple/symmetric/model.pt",
        data=data_file(DATA, PLAN.dataset("ddpm_2020", "eps_simple")),  # the data that network learned
    output:
        f"{RES}/metrics/ddim_2021/reconstruction.csv",
    params:
        settings=json.dumps(_DDIM_RECON, sort_keys=True),
        run=json.dumps({"paper": "ddim_2021", "experiment": "on_ddpm", "input_scaling": "symmetric"}),
    threads: 8
    conda:
        "../envs/environment.yaml"
    log:
        f"{RES}/logs/ddim_2021/reconstruction.log",
    shell:
        "python -m diffrepro.stages.ddim_reconstruction --model {input.model:q} --data {input.data:q} "
        "--settings {params.settings:q} --run {params.run:q} --out {output:q} --threads {threads} 2> {log:q}"


register_plugin("ddim_2021", metrics=[f"{RES}/metrics/ddim_2021/reconstruction.csv"])
