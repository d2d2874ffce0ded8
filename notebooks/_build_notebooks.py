"""Write the example notebooks of haq-rl from the cell sources below.

The notebooks are generated, not edited by hand: change a cell here and run

    .venv/bin/python notebooks/_build_notebooks.py

from the repository root (or anywhere: paths are relative to this file). The
notebooks are written without outputs or execution counts, ready to commit;
``tests/test_notebooks.py`` executes them on tiny budgets.

Every notebook starts with the same settings cell: ``TINY`` (from the environment
variable ``HAQ_RL_NOTEBOOK_TINY``, default ``"1"``) picks seconds-long budgets, and
results go to a fresh temporary folder (under ``HAQ_RL_NOTEBOOK_OUT`` when set),
never into the repository.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def settings_cell(name: str) -> str:
    """The shared first code cell: TINY flag, one thread, output folder."""
    return f'''\
%matplotlib inline
import os
import tempfile
from pathlib import Path

import torch

# TINY = True runs in seconds (a few episodes, small models); set the environment
# variable HAQ_RL_NOTEBOOK_TINY=0 (or edit this line) for real budgets.
TINY = os.environ.get("HAQ_RL_NOTEBOOK_TINY", "1") != "0"

# Small MLP agents and small models: one CPU thread is the fastest and plays well
# with other work on the machine.
torch.set_num_threads(1)

# Every run of this notebook writes into a fresh folder: under $HAQ_RL_NOTEBOOK_OUT
# when it is set, else in the system's temporary directory.
_parent = os.environ.get("HAQ_RL_NOTEBOOK_OUT")
if _parent:
    Path(_parent).mkdir(parents=True, exist_ok=True)
OUT = Path(tempfile.mkdtemp(prefix="{name}-", dir=_parent))
print(f"TINY={{TINY}}, results in {{OUT}}")'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


# --------------------------------------------------------------------------- 01
QUICKSTART = [
    md("""
# haq-rl quickstart: search, inspect, fine-tune

HAQ (Wang et al., CVPR 2019) trains a reinforcement-learning agent (DDPG) to choose the
weight and activation bit width of every layer of a network, under a hardware budget
(latency, energy or model size on a named accelerator). This notebook runs the whole
pipeline from Python:

1. a small **search** (`haq_rl.search.run_search`), which writes a *run directory*;
2. the **best policy** it found, layer by layer (`haq_rl.report.policy_table`);
3. the **learning curve** and the **bits per layer** (`haq_rl.report.plot_*`);
4. a short **quantization-aware fine-tune** of that policy against uniform baselines,
   and a Markdown **report** of the run.

With `TINY = True` (the default) it searches LeNet-5 under a model-size budget for a
dozen episodes, which takes seconds; with `TINY = False` it runs haq-rl's default env
(`haq_rl.env.DEFAULT_ENV_ID`, the task the CLI uses when none is named) for 200 episodes,
which takes a while on a CPU.
"""),
    code(settings_cell("01_quickstart")),
    md("""
## 1. Search

`SearchConfig` holds every setting of a search (the CLI `haq-rl search` maps its flags
onto it one to one). `env` is a registered Gymnasium id; `method="ddpg"` is HAQ's agent,
and `agent={...}` overrides its settings: here fewer warm-up episodes (uniform random
actions before the first update) so that a short search still learns something.

The first search of a model also trains its float model once and caches it
(`~/.cache/haq_rl`, or `$HAQ_RL_CACHE`).
"""),
    code("""
from haq_rl.env import DEFAULT_ENV_ID
from haq_rl.search import SearchConfig, run_search

if TINY:
    config = SearchConfig(env="haq_rl/LeNet5Size-v1", method="ddpg", episodes=12,
                          agent={"warmup_episodes": 5}, out=str(OUT / "lenet5-ddpg"), progress=False)
else:
    config = SearchConfig(env=DEFAULT_ENV_ID, method="ddpg", episodes=200, out=str(OUT / "default-env-ddpg"))

result = run_search(config)
print(f"{result.episodes} episodes in {result.wall_time_s:.1f} s -> {result.run_dir}")
print(f"best: accuracy {result.best_accuracy:.2f}% at {result.best_cost_ratio:.3f} of the 8-bit cost "
      f"(episode {result.best['episode']})")
"""),
    md("""
The run directory holds plain files you can keep: `config.json` (all settings),
`episodes.csv` (one row per evaluated policy), `best_policy.json` (the best policy
within budget) and the agent (`agent.pt`).
"""),
    code("""
sorted(p.name for p in result.run_dir.iterdir())
"""),
    md("""
## 2. The best policy, layer by layer

`report.load_run` reads a run directory; `report.policy_table` gives one row per
quantizable layer: its kind, the chosen bits, its MACs and parameters, and its cost at
the policy and at uniform 8/8. `share` is the layer's fraction of the model's cost for
the run's objective, which shows where the budget went.
"""),
    code("""
from haq_rl import report

run = report.load_run(result.run_dir)
table = report.policy_table(run)
table[["layer", "kind", "w_bits", "a_bits", "macs", "params", "share", "share_8bit"]]
"""),
    md("""
## 3. Learning curve and bits per layer

`plot_curve` shows the reward and accuracy of every episode with the running best
within budget; the shaded bands are the phases (warm-up with random actions, then the
agent exploring with decaying noise, then one noise-free final episode).
`plot_bits` shows the bits the best policy gives each layer (colour = layer kind).
Both return matplotlib Figures.
"""),
    code("""
report.plot_curve(run)
"""),
    code("""
report.plot_bits(run)
"""),
    md("""
`report.episodes` is `episodes.csv` as a DataFrame plus the running best, ready for your
own analysis:
"""),
    code("""
report.episodes(run)[["episode", "phase", "reward", "accuracy", "cost_ratio", "best_accuracy"]].tail()
"""),
    md("""
## 4. Fine-tune and report

The search scores policies without training (accuracy of the quantized pretrained model
on a held-out reward split). `finetune_run` then trains the best policy with fake
quantizers (QAT) and measures it on the test split, next to uniform baselines given the
same fine-tune (uniform 8/8, 4/4 and the largest uniform policy within budget). One
epoch is enough to see the picture.
"""),
    code("""
from haq_rl.finetune import FinetuneConfig, finetune_run

metrics = finetune_run(run.path, FinetuneConfig(epochs=1), progress=not TINY)
comparison = report.comparison_table(run.path)
comparison[["name", "mean_w_bits", "mean_a_bits", "accuracy_before", "accuracy", "cost_ratio", "within_budget"]]
"""),
    md("""
`write_report` writes `report.md` and a `report/` folder (PNG figures, every table as
CSV) into the run directory: the same as `haq-rl report RUN_DIR` on the command line.
"""),
    code("""
report_path = report.write_report([run.path])
print(report_path)
print(report_path.read_text()[:800])
"""),
    md("""
## Next

- `02_inspect_policies.ipynb`: compare runs (edge vs cloud accelerator) with pandas and plots.
- `03_env_for_rl_research.ipynb`: use the environments with any RL agent.
- The same pipeline on the command line: `haq-rl search`, `haq-rl finetune RUN_DIR`,
  `haq-rl report RUN_DIR`.
"""),
]

# --------------------------------------------------------------------------- 02
INSPECT = [
    md("""
# Inspecting and comparing quantization policies

A search writes a run directory; `haq_rl.report` loads it into pandas DataFrames and
matplotlib Figures. This notebook searches the **same model** (MobileNetV2 on mnist5k)
under the **same budget** (50% of the 8/8 latency) on two accelerators, and compares
the policies:

- `haq_rl/MobileNetV2Edge-v0`: BISMO on an edge FPGA, batch 1;
- `haq_rl/MobileNetV2Cloud-v0`: BISMO on a cloud FPGA, batch 16.

HAQ's observation is that the best policy depends on the hardware. On both BISMO
profiles the depthwise layers are bound by fetching activations (their cost grows with
activation bits, hardly with weight bits); on the cloud device the large 1x1 convolutions
are compute bound (cost ~ weight bits x activation bits) and the late layers bound by
fetching weights, so the bits go to different places (docs/hardware.md, "Edge versus cloud").

With `TINY = True` both runs use the greedy baseline with a handful of evaluations
(the budget is then reached by the env's *action wall*, which lowers bits where they
cost the most); with `TINY = False` both run HAQ's DDPG agent for 200 episodes.
"""),
    code(settings_cell("02_inspect_policies")),
    md("""
## 1. Two searches

Both searches use the same method, episodes and seed; only the env differs. Each writes
its own run directory under `OUT`.
"""),
    code("""
from haq_rl.search import SearchConfig, run_search

method, episodes = ("greedy", 6) if TINY else ("ddpg", 200)
run_dirs = {}
for name, env_id in [("edge", "haq_rl/MobileNetV2Edge-v0"), ("cloud", "haq_rl/MobileNetV2Cloud-v0")]:
    result = run_search(SearchConfig(env=env_id, method=method, episodes=episodes,
                                     out=str(OUT / name), progress=not TINY))
    run_dirs[name] = result.run_dir
    print(f"{name}: best accuracy {result.best_accuracy:.2f}% at {result.best_cost_ratio:.3f} "
          f"of the 8/8 latency, {result.wall_time_s:.1f} s")
"""),
    md("""
## 2. Runs as DataFrames

`load_run` reads a run directory (a `label` names it in tables and legends).
`best_table` gives one row per run: its env, hardware, method and best policy.
"""),
    code("""
from haq_rl import report

edge = report.load_run(run_dirs["edge"], label="edge")
cloud = report.load_run(run_dirs["cloud"], label="cloud")
report.best_table([edge, cloud])
"""),
    md("""
`episodes` is every evaluated policy, one row each, with the bits of every layer in
`w:<layer>` / `a:<layer>` columns and the running best:
"""),
    code("""
frame = report.episodes(edge)
frame[["episode", "phase", "reward", "accuracy", "cost_ratio", "within_budget", "mean_w_bits", "mean_a_bits"]]
"""),
    md("""
## 3. Bits per layer, edge vs cloud

`policy_table` of each run, joined on the layer name: the bits each accelerator's policy
gives a layer, and the layer's share of the model's latency at 8/8 on that accelerator.
Layers whose share differs a lot between the two devices are where the policies differ.
"""),
    code("""
columns = ["layer", "kind", "w_bits", "a_bits", "share_8bit"]
side_by_side = report.policy_table(edge)[columns].merge(
    report.policy_table(cloud)[columns], on=["layer", "kind"], suffixes=("_edge", "_cloud"))
side_by_side["bits_differ"] = ((side_by_side["w_bits_edge"] != side_by_side["w_bits_cloud"])
                               | (side_by_side["a_bits_edge"] != side_by_side["a_bits_cloud"]))
print(f"{side_by_side['bits_differ'].sum()} of {len(side_by_side)} layers get different bits")
side_by_side[side_by_side["bits_differ"]]
"""),
    md("""
(With `TINY = True` the greedy baseline stops after a few evaluations and the action wall
does most of the work, lowering bits nearly uniformly, so few layers differ; with
`TINY = False` the agents learn device-specific policies.)
"""),
    md("""
Mean bits per layer kind: where each accelerator spends its budget.
"""),
    code("""
side_by_side.groupby("kind")[["w_bits_edge", "w_bits_cloud", "a_bits_edge", "a_bits_cloud"]].mean().round(2)
"""),
    md("""
`plot_bits` with a list of runs overlays them: colour = run, hatch = layer kind.
"""),
    code("""
report.plot_bits([edge, cloud])
"""),
    md("""
`plot_cost_share` shows each layer's share of the latency at the searched policy and at
uniform 8/8, per accelerator.
"""),
    code("""
report.plot_cost_share([edge, cloud])
"""),
    md("""
## 4. Accuracy vs cost: the Pareto front

Every evaluated policy as a point (accuracy vs cost ratio to 8/8), the Pareto front of
each run, its best policy, the budget and the uniform B/B baselines. `pareto_front` gives
the front as a DataFrame.
"""),
    code("""
report.plot_pareto([edge, cloud])
"""),
    code("""
report.pareto_front(report.episodes(cloud), "cost_ratio", "accuracy")[["episode", "accuracy", "cost_ratio"]]
"""),
    md("""
To save all of this as files (PNG + CSV + a Markdown summary), use
`report.write_report([edge.path, cloud.path], out_dir)` or
`haq-rl report RUN_A RUN_B --out DIR`.
"""),
]

# --------------------------------------------------------------------------- 03
RESEARCH = [
    md("""
# The environments for RL research

`import haq_rl.env` registers a suite of Gymnasium environments, one per task (model,
dataset, accelerator, objective, budget). They follow Gymnasium's contract and import
no RL library, so **any agent can drive them**. This notebook:

1. makes a registered env and looks at its spaces and its last-step `info`;
2. runs a uniformly random agent for `K` episodes;
3. trains a plain stable-baselines3 `TD3` (no haq-rl agent code) for `K` episodes;
4. compares their rewards in a table and a plot.

With `TINY = True` it uses `haq_rl/LeNet5Size-v1` (5 steps per episode, fast to score)
and `K = 20`; with `TINY = False` haq-rl's default env (`haq_rl.env.DEFAULT_ENV_ID`) and
`K = 150`.
"""),
    code(settings_cell("03_env_for_rl_research")),
    md("""
## 1. The environment

One episode quantizes the network one decision at a time (a layer's weight bits, then
its activation bits): the action is one number in [-1, 1] mapped to a bit width, the
observation embeds the current layer (shape, kind, position, the previous action). The
reward comes at the last step, after the *action wall* has lowered bits until the policy
meets the budget: it is driven by the accuracy of the quantized model. `gymnasium.make`
accepts overrides of the spec (e.g. `budget=0.3`).
"""),
    code("""
import gymnasium as gym
import numpy as np

import haq_rl.env  # registers the haq_rl/... env ids

print("\\n".join(env_id for env_id in gym.registry if env_id.startswith("haq_rl/")))

ENV_ID = "haq_rl/LeNet5Size-v1" if TINY else haq_rl.env.DEFAULT_ENV_ID
K = 20 if TINY else 150
SEED = 0

env = gym.make(ENV_ID)
base = env.unwrapped
print(f"{ENV_ID}: {base.steps_per_episode} steps per episode over {len(base.layer_names)} layers, "
      f"budget {base.scorer.budget_ratio:.2f} of the 8-bit cost")
print("action space:", env.action_space)
print("observation space:", env.observation_space)
"""),
    md("""
The `info` of the last step describes the policy the episode produced:
"""),
    code("""
observation, info = env.reset(seed=SEED)
terminated = truncated = False
while not (terminated or truncated):
    observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
print(f"reward {reward:.3f}")
{key: info[key] for key in ("accuracy", "cost_ratio", "latency_ms", "energy_uj", "size_bytes", "policy")}
"""),
    md("""
To compare agents we only need each episode's final `info`; a five-line wrapper collects
it, whatever drives the env.
"""),
    code("""
class EpisodeLog(gym.Wrapper):
    \"\"\"Keeps the last-step info of every finished episode (reward, accuracy, cost ratio).\"\"\"

    def __init__(self, env):
        super().__init__(env)
        self.rows = []

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self.rows.append({"episode": len(self.rows), "reward": float(reward),
                              "accuracy": info["accuracy"], "cost_ratio": info["cost_ratio"]})
        return observation, reward, terminated, truncated, info
"""),
    md("""
## 2. A random agent

Uniform random actions; the action wall keeps every policy within budget.
"""),
    code("""
random_env = EpisodeLog(gym.make(ENV_ID))
random_env.action_space.seed(SEED)
for episode in range(K):
    random_env.reset(seed=SEED + episode)
    terminated = truncated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = random_env.step(random_env.action_space.sample())
print(f"random: {len(random_env.rows)} episodes")
"""),
    md("""
## 3. Plain stable-baselines3 TD3

Nothing from `haq_rl.agent`: SB3's `TD3` as it comes, with Gaussian action noise, a few
random episodes before learning starts (`learning_starts`) and one update per step.
Training for `K` episodes is `K * steps_per_episode` timesteps, since every episode has
the same length. (`haq_rl.agent` adds what HAQ does on top of SB3: truncated-normal
noise with decay, an episode-reward replay with a moving baseline, the applied actions
in the replay.)
"""),
    code("""
from stable_baselines3 import TD3
from stable_baselines3.common.noise import NormalActionNoise

td3_env = EpisodeLog(gym.make(ENV_ID))
T = td3_env.unwrapped.steps_per_episode
agent = TD3(
    "MlpPolicy", td3_env, seed=SEED, verbose=0, device="cpu",
    learning_starts=5 * T, batch_size=64, gamma=1.0,
    policy_kwargs={"net_arch": [64, 64]},
    action_noise=NormalActionNoise(mean=np.zeros(1), sigma=0.3 * np.ones(1)),
)
agent.learn(total_timesteps=K * T)
print(f"TD3: {len(td3_env.rows)} episodes")
"""),
    md("""
## 4. Comparison

Mean and best reward over the `K` episodes, and the accuracy / cost ratio of each agent's
best episode. On a tiny budget the difference is noise; with `TINY = False` the learning
agent should pull ahead.
"""),
    code("""
import pandas as pd

logs = {"random": pd.DataFrame(random_env.rows), "td3 (SB3)": pd.DataFrame(td3_env.rows)}
summary = pd.DataFrame([
    {"agent": name, "episodes": len(frame), "mean_reward": frame["reward"].mean(),
     "best_reward": frame["reward"].max(), "mean_accuracy": frame["accuracy"].mean(),
     "best_accuracy": frame.loc[frame["reward"].idxmax(), "accuracy"],
     "best_cost_ratio": frame.loc[frame["reward"].idxmax(), "cost_ratio"]}
    for name, frame in logs.items()
]).set_index("agent")
summary.round(3)
"""),
    code("""
from matplotlib.figure import Figure

fig = Figure(figsize=(7, 3.5), layout="constrained")
ax = fig.subplots()
for name, frame in logs.items():
    line, = ax.plot(frame["episode"], frame["reward"], "o", alpha=0.4, ms=4)
    ax.plot(frame["episode"], frame["reward"].cummax(), color=line.get_color(), label=f"{name} (best so far)")
ax.set_xlabel("episode")
ax.set_ylabel("reward")
ax.set_title(ENV_ID)
ax.legend()
fig
"""),
    md("""
## Next

- Swap in any agent: SAC/PPO from SB3, CleanRL scripts, your own loop; the env only needs
  actions in `[-1, 1]`.
- Other tasks: `haq_rl/MobileNetV2Cloud-v0`, `haq_rl/MobileNetV2BitFusionEnergy-v1`
  (energy on BitFusion), `haq_rl/ResNet8Edge-v0`, or your own YAML spec.
- HAQ's own DDPG: `haq_rl.agent.make_agent(env, AgentConfig(...))` and
  `learn_episodes(model, n)`, or the whole search harness with `haq_rl.search.run_search`.
"""),
]

# --------------------------------------------------------------------------- 04
BRING_YOUR_OWN = [
    md("""
# Bring your own model: a network trained in plain PyTorch, searched as it is

Practitioners come with a trained network and their own data. This notebook trains a
small CNN on scikit-learn's 8x8 digits **with plain PyTorch** (no haq-rl code), saves its
`state_dict`, loads it back as a user would, and hands model and data to haq-rl:

1. `haq_rl.task.Task.from_model(model, search_train=..., reward_val=..., test=...)`
   builds the task (torch Datasets or DataLoaders; any metric);
2. `run_search(config, task=task)` searches it (nothing is pretrained);
3. `finetune_run(run_dir, task=task)` fine-tunes the best policy beside the uniform ones;
4. `haq_rl.report` tables and `write_report` read the run directory.

From the command line, a model importable as `package.module:factory` with a saved
`state_dict` goes through the same pipeline on a built-in dataset:
`haq-rl search --model mypkg.nets:factory --weights sd.pt --budget 0.8`.
"""),
    code(settings_cell("04_bring_your_own_model")),
    md("## 1. Train a model in plain PyTorch and save its weights"),
    code("""
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
labels = torch.tensor(digits.target, dtype=torch.int64)
train = TensorDataset(images[:1200], labels[:1200])
reward = TensorDataset(images[1200:1500], labels[1200:1500])
test = TensorDataset(images[1500:], labels[1500:])


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.body(x))


torch.manual_seed(0)
model = DigitsCNN()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(4 if TINY else 20):
    for x, y in DataLoader(train, batch_size=64, shuffle=True):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
torch.save(model.state_dict(), OUT / "digits_cnn.pt")

model = DigitsCNN()                                  # as a user would: a fresh model ...
model.load_state_dict(torch.load(OUT / "digits_cnn.pt", weights_only=True))   # ... and the file
model.eval()
with torch.no_grad():
    print(f"float test accuracy {100 * (model(test.tensors[0]).argmax(1) == test.tensors[1]).float().mean():.1f}%")
"""),
    md("""
## 2. The task: your model, your splits, a hardware budget

`Task.from_model` traces the model once for its layer shapes and costs them on the
hardware profile. `metric=` takes any `metric(outputs, targets) -> float` (higher is
better); `haq_rl.training.METRICS` ships `top1` (the default), `top5` and
`neg_cross_entropy`.
"""),
    code("""
from haq_rl.task import Task

task = Task.from_model(model, search_train=train, reward_val=DataLoader(reward, batch_size=100), test=test,
                       name="DigitsCNN", hardware="bismo-edge", objective="latency", budget=0.5)
print(task.spec.id, "-", len(task.layers), "quantizable layers:", task.layer_names)
"""),
    md("## 3. Search, fine-tune, report"),
    code("""
from haq_rl import report
from haq_rl.finetune import FinetuneConfig, finetune_run
from haq_rl.search import SearchConfig, run_search

method, episodes = ("hawq", 1) if TINY else ("guided", 80)
result = run_search(SearchConfig(method=method, episodes=episodes, out=str(OUT / "search"), progress=not TINY),
                    task=task)
print(f"best policy: reward-split accuracy {result.best_accuracy:.1f}% at latency ratio {result.best_cost_ratio:.3f}")
metrics = finetune_run(result.run_dir, FinetuneConfig(epochs=1), task=task, progress=not TINY)
import pandas as pd
pd.DataFrame(metrics["rows"])[["name", "accuracy", "cost_ratio", "within_budget"]]
"""),
    code("""
run = report.load_run(result.run_dir)
print(report.write_report(run))
report.policy_table(run)[["layer", "kind", "w_bits", "a_bits", "latency_ms", "share"]]
"""),
    code("""
report.plot_bits(run)   # bits per layer of the best policy (a matplotlib Figure)
"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_inspect_policies.ipynb": INSPECT,
    "03_env_for_rl_research.ipynb": RESEARCH,
    "04_bring_your_own_model.ipynb": BRING_YOUR_OWN,
}


def build(name: str, cells: list) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{Path(name).stem[:2]}-{index:02d}"  # stable ids: clean diffs on regeneration
    nbformat.validate(notebook)
    return notebook


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(name, cells), HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
