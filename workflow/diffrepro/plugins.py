"""The one registry of what a paper's own rule file (replications/<paper>.smk) adds to the core DAG:
metrics files that join metrics.csv, and figures the report draws in that paper's section, each
{"name", "input": a file its rules write, "draw": "module:function(input, png, title)", "caption"}."""


class PluginRegistry:
    def __init__(self):
        self.papers = {}

    def register(self, paper: str, metrics=(), figures=()) -> None:
        entry = self.papers.setdefault(paper, {"metrics": [], "figures": []})
        entry["metrics"].extend(metrics)
        entry["figures"].extend(figures)

    def metrics(self) -> list:
        return [path for entry in self.papers.values() for path in entry["metrics"]]

    def figures(self) -> list:
        return [{"paper": paper, **f} for paper, entry in sorted(self.papers.items()) for f in entry["figures"]]
