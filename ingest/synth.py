"""The embedded default: a synthetic multi-scene world that models what PRECISE claims.

`precise data synth --days N` writes one drop per day into `landing/date=D/` (events.parquet,
catalog.parquet), deterministic per seed: day d depends only on (seed, d), so asking for more days
later extends the world without changing the days already written.

The generative story (every knob is in `params.yaml: synth`):

* Scenes (>= 4) each have their own item pool. Every item has a latent **topic** and a hidden
  **style** (a sub-taste within the topic), and a power-law base popularity (Zipf within its pool).
* Item text (title and description) is drawn from the topic's vocabulary plus generic words and
  a little noise. The style never reaches the text: items with the same topic words but different
  styles are consumed by different users, so text carries part of the collaborative signal, not all.
* Users have a cross-scene topic mixture (Dirichlet) and, per scene, their own scene-specific
  tastes; a scene visit draws its topic from the shared mixture with probability
  `shared_interest`, else from the scene-specific one. Each user has a favourite style per topic.
* A user-day is a session: Poisson(lognormal rate) clicks; the next click keeps the current
  topic with probability `topic_stickiness` (so order matters), may switch scene, and picks an item
  of (scene, topic, style) by popularity, boosted while the item is new. Users rarely repeat items.
* New items are published every day in the early morning (before any session), are hot for a few
  days (`new_item_boost`, halving every `new_item_half_life` days), so some next-day targets were
  never seen in training; most of the catalog stays a long tail of cold items.
* Two actions: `click` (every consumption) and `share` (rare). A share is always preceded by a
  click of the same item by the same user, 5 s to 5 min earlier; its probability is
  `share_rate_strong` on an item of the user's top topic and favourite style, else
  `share_rate_weak`.

* An **impression log** (`impressions.parquet` in each drop; `impressions_per_click` 0: none), the
  log a ranking team has and precise does not ingest: for every click, the slate its scene's feed
  showed at that moment, the clicked item and `impressions_per_click - 1` items passed over, half
  drawn from the scene's live items by popularity (new items boosted, as clicks are), half from the
  clicked item's topic in the scene (any style, same weights), so a good ranker must know the
  user's style, which the text does not show. Columns: slate_id, user_id, item_id, scene, ts (the
  click's), position (0-based, shuffled), clicked (1 for the clicked item). Drawn from its own random
  stream: the events are the same with or without it.

`tests/data/test_synth.py` checks each property statistically; those tests freeze the generator.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.atomic import atomic_dir, write_json
from core.errors import PreciseError
from core.settings import SynthConfig

log = logging.getLogger(__name__)

# One vocabulary per latent topic. Real English words so that a language model sees meaning.
TOPIC_WORDS: tuple[tuple[str, ...], ...] = (
    ("football", "goal", "league", "striker", "match", "stadium", "transfer", "coach", "penalty", "derby", "keeper", "season"),
    ("recipe", "kitchen", "bake", "flour", "oven", "pasta", "sauce", "spice", "dessert", "garlic", "roast", "chef"),
    ("stock", "market", "investor", "shares", "dividend", "inflation", "bank", "bond", "earnings", "portfolio", "trading", "rates"),
    ("galaxy", "planet", "telescope", "orbit", "rocket", "astronaut", "comet", "nebula", "launch", "mars", "satellite", "cosmos"),
    ("guitar", "chord", "melody", "band", "concert", "riff", "drummer", "vocals", "acoustic", "tour", "studio", "ballad"),
    ("election", "senate", "vote", "campaign", "policy", "minister", "parliament", "reform", "debate", "ballot", "coalition", "law"),
    ("puppy", "kitten", "dog", "cat", "pet", "veterinary", "leash", "adoption", "breed", "paws", "shelter", "grooming"),
    ("smartphone", "chip", "laptop", "software", "startup", "battery", "gadget", "robot", "cloud", "processor", "app", "update"),
    ("mountain", "hiking", "trail", "camping", "summit", "tent", "backpack", "forest", "canyon", "river", "glacier", "trek"),
    ("fashion", "dress", "runway", "designer", "fabric", "style", "jacket", "sneakers", "vintage", "boutique", "denim", "couture"),
    ("workout", "fitness", "muscle", "cardio", "yoga", "protein", "marathon", "gym", "stretch", "squat", "endurance", "coach"),
    ("castle", "dragon", "sword", "kingdom", "wizard", "knight", "quest", "spell", "dungeon", "armor", "legend", "realm"),
    ("car", "engine", "racing", "motor", "electric", "horsepower", "driver", "garage", "rally", "turbo", "sedan", "highway"),
    ("garden", "flowers", "seeds", "soil", "tomato", "compost", "orchid", "pruning", "greenhouse", "bloom", "herbs", "roses"),
    ("movie", "director", "actor", "cinema", "premiere", "sequel", "screenplay", "trailer", "oscar", "thriller", "comedy", "scene"),
    ("island", "beach", "resort", "flight", "passport", "cruise", "hotel", "tropical", "luggage", "tourism", "lagoon", "voyage"),
    ("chess", "opening", "gambit", "grandmaster", "endgame", "rook", "bishop", "checkmate", "tournament", "pawn", "blitz", "board"),
    ("climate", "carbon", "solar", "wind", "emission", "recycling", "energy", "drought", "ocean", "wildlife", "forest", "green"),
    ("baby", "parenting", "toddler", "school", "family", "teacher", "homework", "nursery", "childhood", "sleep", "playground", "lunchbox"),
    ("painting", "gallery", "sculpture", "canvas", "museum", "artist", "portrait", "exhibition", "brush", "watercolor", "mural", "sketch"),
)

GENERIC_WORDS = (
    "new", "best", "top", "daily", "inside", "guide", "review", "why", "how", "week",
    "ultimate", "first", "live", "update", "story", "look", "big", "small", "secret", "today",
)

SCENE_NOUNS = {
    "article": ("report", "analysis", "column", "feature"),
    "video": ("clip", "highlights", "vlog", "episode"),
    "music": ("track", "mix", "playlist", "single"),
    "game": ("challenge", "arena", "puzzle", "level"),
    "live": ("stream", "broadcast", "session", "show"),
}


@dataclass
class World:
    """Latent truth of one synthetic world (kept in memory; tests use it, drops never show it).

    items: item_id, scene, topic, style, weight, day, title, text, published_at  (one row an item)
    user_topics:        (U, T) cross-scene topic mixture
    user_scene_topics:  (U, S, T) scene-specific tastes
    user_styles:        (U, T) int, favourite style per topic
    user_scenes:        (U, S) scene visit mixture
    user_rate:          (U,) median clicks per day
    """

    cfg: SynthConfig
    items: pd.DataFrame
    user_ids: np.ndarray
    user_topics: np.ndarray
    user_scene_topics: np.ndarray
    user_styles: np.ndarray
    user_scenes: np.ndarray
    user_rate: np.ndarray

    def day(self, index: int) -> str:
        return (dt.date.fromisoformat(self.cfg.start_date) + dt.timedelta(days=index)).isoformat()


def _check(cfg: SynthConfig) -> None:
    from core.errors import PreciseError

    if len(cfg.scenes) < 1 or len(set(cfg.scenes)) != len(cfg.scenes):
        raise PreciseError("synth.scenes must be a non-empty list of distinct names")
    if not 1 <= cfg.topics <= len(TOPIC_WORDS):
        raise PreciseError(f"synth.topics must be between 1 and {len(TOPIC_WORDS)}")
    if cfg.users < 1 or cfg.items_per_scene < cfg.topics * cfg.styles_per_topic:
        raise PreciseError("synth needs users >= 1 and items_per_scene >= topics * styles_per_topic")
    dt.date.fromisoformat(cfg.start_date)


def _item_text(rng: np.random.Generator, topics: np.ndarray, scenes: list[str], n_topics: int):
    """Titles and descriptions from topic vocabularies; style deliberately absent."""
    titles, texts = [], []
    for topic, scene in zip(topics, scenes):
        words = TOPIC_WORDS[topic]
        nouns = SCENE_NOUNS.get(scene, ("item",))
        w = rng.choice(words, size=3, replace=False)
        titles.append(f"{rng.choice(GENERIC_WORDS).capitalize()} {w[0]} {w[1]} {rng.choice(nouns)}: {w[2]}")
        n = int(rng.integers(8, 16))
        body = []
        for _ in range(n):
            r = rng.random()
            if r < 0.65:
                body.append(rng.choice(words))
            elif r < 0.92:
                body.append(rng.choice(GENERIC_WORDS))
            else:  # noise: a word from another topic
                body.append(rng.choice(TOPIC_WORDS[int(rng.integers(n_topics))]))
        texts.append(" ".join(body).capitalize() + ".")
    return titles, texts


def _new_items(cfg: SynthConfig, day_index: int) -> pd.DataFrame:
    """Items published on day `day_index` (day 0: the initial catalog)."""
    rng = np.random.default_rng([cfg.seed, 1, day_index])
    per_scene = cfg.items_per_scene if day_index == 0 else cfg.new_items_per_scene_per_day
    start = pd.Timestamp(cfg.start_date, tz="UTC") + pd.Timedelta(days=day_index)
    rows = []
    for s, scene in enumerate(cfg.scenes):
        topics = rng.choice(cfg.topics, size=per_scene, p=_topic_prior(cfg))
        styles = rng.integers(cfg.styles_per_topic, size=per_scene)
        # Zipf within a pool: weight = U^-a, i.e. the r-th most popular of N has weight ~ (N/r)^a.
        weight = np.minimum(rng.random(per_scene) ** -cfg.popularity_exponent, 1e5)
        if day_index == 0:  # the initial catalog was published over the previous 90 days
            offset = -pd.to_timedelta(rng.integers(1, 90 * 86400, size=per_scene), unit="s")
        else:  # new items appear between 00:00 and 06:00, before any session starts
            offset = pd.to_timedelta(rng.integers(0, 6 * 3600, size=per_scene), unit="s")
        titles, texts = _item_text(rng, topics, [scene] * per_scene, cfg.topics)
        ids = [f"{scene[:2]}-{day_index:03d}-{i:05d}" for i in range(per_scene)]
        rows.append(
            pd.DataFrame(
                {
                    "item_id": ids,
                    "scene": scene,
                    "scene_index": s,
                    "topic": topics,
                    "style": styles,
                    "weight": weight,
                    "day": day_index,
                    "title": titles,
                    "text": texts,
                    "published_at": start + offset,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _topic_prior(cfg: SynthConfig) -> np.ndarray:
    """Some topics are more popular than others overall."""
    p = 1.0 / np.arange(1, cfg.topics + 1) ** 0.7
    return p / p.sum()


def build_world(cfg: SynthConfig) -> World:
    """Draw users' latent interests and every item of `cfg.days` days."""
    _check(cfg)
    rng = np.random.default_rng([cfg.seed, 0])
    U, S, T = cfg.users, len(cfg.scenes), cfg.topics
    alpha = cfg.user_topic_concentration * T * _topic_prior(cfg)
    scene_prior = np.linspace(1.5, 0.75, S)
    scene_prior = scene_prior / scene_prior.sum()
    items = pd.concat([_new_items(cfg, d) for d in range(cfg.days)], ignore_index=True)
    return World(
        cfg=cfg,
        items=items,
        user_ids=np.array([f"u{u:06d}" for u in range(U)]),
        user_topics=rng.dirichlet(alpha, size=U),
        user_scene_topics=rng.dirichlet(alpha, size=(U, S)),
        user_styles=rng.integers(cfg.styles_per_topic, size=(U, T)),
        user_scenes=rng.dirichlet(3.0 * S * scene_prior, size=U),
        user_rate=np.exp(rng.normal(np.log(cfg.events_per_user_day), cfg.activity_sigma, size=U)),
    )


def _live_weights(world: World, day_index: int) -> tuple[pd.DataFrame, np.ndarray]:
    """(the items published by day d, their popularity weight on d, new items boosted)."""
    cfg = world.cfg
    live = world.items[world.items["day"] <= day_index]
    age = day_index - live["day"].to_numpy()
    boost = 1.0 + cfg.new_item_boost * 0.5 ** (age / cfg.new_item_half_life)
    boost[live["day"].to_numpy() == 0] = 1.0  # the initial catalog is not "new"
    return live, live["weight"].to_numpy() * boost


class _Pools:
    """Items available on one day, grouped by (scene, topic, style), with cumulative weights."""

    def __init__(self, world: World, day_index: int):
        cfg = world.cfg
        live, w = _live_weights(world, day_index)
        key = (live["scene_index"].to_numpy() * cfg.topics + live["topic"].to_numpy()) * cfg.styles_per_topic + live["style"].to_numpy()
        order = np.argsort(key, kind="stable")
        self.index = live.index.to_numpy()[order]
        self.cum = {}
        sorted_key, sorted_w = key[order], w[order]
        bounds = np.flatnonzero(np.diff(sorted_key)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(order)]):
            self.cum[int(sorted_key[lo])] = (lo, np.cumsum(sorted_w[lo:hi]))

    def sample(self, key: int, r: float) -> int | None:
        if key not in self.cum:
            return None
        lo, cum = self.cum[key]
        return int(self.index[lo + min(int(np.searchsorted(cum, r * cum[-1])), len(cum) - 1)])


def simulate_day(world: World, day_index: int) -> pd.DataFrame:
    """Events of one day: user_id, item_id, scene, action, ts (sorted by ts, user_id)."""
    cfg = world.cfg
    rng = np.random.default_rng([cfg.seed, 2, day_index])
    pools = _Pools(world, day_index)
    items = world.items
    item_scene = items["scene_index"].to_numpy()
    item_topic = items["topic"].to_numpy()
    item_style = items["style"].to_numpy()
    item_ids = items["item_id"].to_numpy()
    day_start = pd.Timestamp(world.day(day_index), tz="UTC").value // 1000  # microseconds
    top_topic = world.user_topics.argmax(axis=1)
    S, T, K = len(cfg.scenes), cfg.topics, cfg.styles_per_topic

    users, chosen, actions, stamps = [], [], [], []
    counts = rng.poisson(world.user_rate)
    for u in np.flatnonzero(counts):
        n = int(counts[u])
        seen: set[int] = set()
        # Session: starts between 06:00 and 22:00, clicks ~3 min apart, ends before midnight.
        t = rng.uniform(6 * 3600, 22 * 3600)
        topic = -1
        for _ in range(n):
            scene = int(rng.choice(S, p=world.user_scenes[u]))
            if topic < 0 or rng.random() > cfg.topic_stickiness:
                mix = world.user_topics[u] if rng.random() < cfg.shared_interest else world.user_scene_topics[u, scene]
                topic = int(rng.choice(T, p=mix))
            style = int(world.user_styles[u, topic]) if rng.random() < cfg.style_loyalty else int(rng.integers(K))
            key = (scene * T + topic) * K + style
            item = None
            for _try in range(4):  # users rarely repeat an item
                item = pools.sample(key, rng.random())
                if item is None or item not in seen:
                    break
            if item is None:
                continue
            seen.add(item)
            t = min(t + rng.exponential(180.0) + 1.0, 86400.0 - 301.0)
            ts = day_start + int(t * 1e6)
            users.append(u), chosen.append(item), actions.append("click"), stamps.append(ts)
            strong = item_topic[item] == top_topic[u] and item_style[item] == world.user_styles[u, item_topic[item]]
            if rng.random() < (cfg.share_rate_strong if strong else cfg.share_rate_weak):
                users.append(u), chosen.append(item), actions.append("share")
                stamps.append(ts + int(rng.uniform(5, 300) * 1e6))

    chosen_arr = np.asarray(chosen, dtype=np.int64)
    events = pd.DataFrame(
        {
            "user_id": world.user_ids[np.asarray(users, dtype=np.int64)],
            "item_id": item_ids[chosen_arr],
            "scene": np.asarray(cfg.scenes, dtype=object)[item_scene[chosen_arr]],
            "action": actions,
            "ts": pd.to_datetime(np.asarray(stamps, dtype=np.int64), unit="us", utc=True),
        }
    )
    return events.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)


def impressions_day(world: World, day_index: int, events: pd.DataFrame) -> pd.DataFrame:
    """The impression log of a day's events (module docstring): one slate per click."""
    cfg = world.cfg
    size = cfg.impressions_per_click
    columns = ["slate_id", "user_id", "item_id", "scene", "ts", "position", "clicked"]
    clicks = events[events["action"] == "click"].reset_index(drop=True)
    if size <= 0 or clicks.empty:
        return pd.DataFrame({c: [] for c in columns})
    rng = np.random.default_rng([cfg.seed, 3, day_index])
    items = world.items
    live, weight = _live_weights(world, day_index)
    scene_of, topic_of = live["scene_index"].to_numpy(), live["topic"].to_numpy()

    def sampler(mask: np.ndarray):
        idx = live.index.to_numpy()[mask]
        return idx, np.cumsum(weight[mask])

    by_scene = {s: sampler(scene_of == s) for s in range(len(cfg.scenes))}
    by_topic: dict[tuple[int, int], tuple] = {}
    position = {item_id: i for i, item_id in enumerate(items["item_id"].to_numpy())}
    scene_index = {name: i for i, name in enumerate(cfg.scenes)}
    rows: dict[str, list] = {c: [] for c in columns}
    item_ids = items["item_id"].to_numpy()
    for n, (user, item_id, scene, ts) in enumerate(zip(clicks["user_id"], clicks["item_id"], clicks["scene"], clicks["ts"])):
        item, s = position[item_id], scene_index[scene]
        t = int(items["topic"].iat[item])
        if (s, t) not in by_topic:
            by_topic[(s, t)] = sampler((scene_of == s) & (topic_of == t))
        slate = [item]
        for pool, want in ((by_topic[(s, t)], (size - 1) // 2), (by_scene[s], size - 1)):
            idx, cum = pool
            for _ in range(8 * size):  # draws without the clicked item or a repeat
                if len(slate) >= 1 + want or len(idx) == 0:
                    break
                pick = int(idx[min(int(np.searchsorted(cum, rng.random() * cum[-1])), len(cum) - 1)])
                if pick not in slate:
                    slate.append(pick)
        order = rng.permutation(len(slate))
        for pos, k in enumerate(order):
            rows["slate_id"].append(f"{world.day(day_index)}-{n:06d}")
            rows["user_id"].append(user)
            rows["item_id"].append(item_ids[slate[k]])
            rows["scene"].append(scene)
            rows["ts"].append(ts)
            rows["position"].append(pos)
            rows["clicked"].append(int(k == 0))
    frame = pd.DataFrame(rows)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.astype({"position": "int32", "clicked": "int8"})


def catalog_delta(world: World, day_index: int) -> pd.DataFrame:
    """The catalog drop of a day: the items published that day (day 0: the initial catalog)."""
    delta = world.items[world.items["day"] == day_index]
    return delta[["item_id", "scene", "title", "text", "published_at"]].reset_index(drop=True)


RECORD = "_synth.json"  # in landing/: the settings of the world its drops come from


def recorded(landing: Path) -> dict | None:
    """The synth settings the drops in `landing/` were written with (`RECORD`), or None."""
    import json

    path = Path(landing) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def run(cfg: SynthConfig, landing: Path, days: int | None = None) -> dict:
    """Write `days` daily drops into `landing/`. Existing drops are never touched; more days of the
    same world may be added later (day d depends only on the settings and d), and `landing/_synth.json`
    records the settings so that drops of two different worlds never mix."""
    from dataclasses import asdict, replace

    if days is not None:
        cfg = replace(cfg, days=days)
    before = recorded(landing)
    if before is not None:
        differ = sorted(k for k, v in asdict(cfg).items() if k != "days" and json_value(v) != before.get(k))
        if differ:
            raise PreciseError(f"{Path(landing) / RECORD} says its drops come from another synthetic world "
                               f"({', '.join(f'{k}: {before.get(k)}' for k in differ)}); generate with those "
                               "settings, or into an empty landing folder")
    world = build_world(cfg)
    written, kept, n_events = [], [], 0
    for d in tqdm(range(cfg.days), desc="synth days", unit="day", disable=None):
        day = world.day(d)
        target = Path(landing) / f"date={day}"
        if target.exists():
            kept.append(day)
            continue
        events = simulate_day(world, d)
        with atomic_dir(target) as tmp:
            events.to_parquet(tmp / "events.parquet", index=False)
            catalog_delta(world, d).to_parquet(tmp / "catalog.parquet", index=False)
            if cfg.impressions_per_click > 0:
                impressions_day(world, d, events).to_parquet(tmp / "impressions.parquet", index=False)
        written.append(day)
        n_events += len(events)
    write_json(Path(landing) / RECORD, {k: json_value(v) for k, v in asdict(cfg).items()}
               | {"days": max(cfg.days, (before or {}).get("days", 0))})
    log.info("synth: wrote %d drops (%d events), kept %d existing", len(written), n_events, len(kept))
    return {"written": written, "kept": kept, "events": n_events, "items": len(world.items)}


def json_value(v):
    """A settings value as JSON reads it back (tuples are lists)."""
    return list(v) if isinstance(v, tuple) else v
