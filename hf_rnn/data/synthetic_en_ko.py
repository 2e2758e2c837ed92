"""Synthetic English→Korean parallel corpus: the embedded default for the LSTM translator.

Why it exists: the package generates this corpus itself, deterministically from a seed,
so the default training run, the tests and the README example need no download and no
network. Every pair is produced by a small hand-checked grammar, so the Korean side is
correct by construction rather than scraped.

Grammar covered (plain written 해라체 register throughout):

* Word order: English SVO becomes Korean SOV (``I eat apples`` → ``나는 사과를 먹는다``).
* Particles picked by whether the noun's last syllable has a final consonant (batchim):
  topic 은/는 on every subject, object 을/를, subject 이/가 (negative copula and
  ``will be`` → ``이/가 되다``), locative 에 for go/live.
* Copula: ``이다`` after a consonant-final noun, ``다`` after a vowel-final one
  (``학생이다`` / ``의사다``), past ``이었다/였다``, negative ``이/가 아니다/아니었다``,
  future ``이/가 될 것이다``; questions ``이니/니`` and ``이었니/였니``.
* Verbs (23, conjugations hard-coded per verb rather than derived): present
  ``는다/ㄴ다`` (먹는다, 간다, ㄹ-stems 만든다, 산다), past (먹었다, 봤다, 도왔다, 들었다),
  future ``ㄹ/을 것이다``, negation ``지 않는다/않았다/않을 것이다``, yes/no questions
  ``니?/었니?`` and wh-questions with 무엇을 / 누구를 / 어디에.
* Subjects: I/you/he/she/we/they (나/너/그/그녀/우리/그들) and four names; objects may carry
  an attributive adjective (``big dogs`` → ``큰 개``).
* English side: a/an, third-person -s, irregular pasts, do/does/did questions and
  negation, am/is/are/was/were, bare plurals for objects and plural nouns after we/they.

Held-out evaluation: every (subject, noun) combination, counting the wh-words 무엇/누구/어디
as nouns, belongs either to training or to evaluation. For each noun one subject is set
aside per seed, so validation/test sentences pair words that training never shows
together while every individual word still occurs in training.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import NamedTuple

from datasets import Dataset, DatasetDict, Features, Translation

Adjective = tuple[str, str]  # (English, Korean attributive form)


class Subject(NamedTuple):
    """A sentence subject; ``person`` drives English agreement ("1s", "2", "3s", "1p", "3p")."""

    en: str  # as written mid-sentence
    ko: str
    person: str


class Noun(NamedTuple):
    """A noun; ``en`` is its object form (bare plural, mass or definite) or, for jobs, the singular."""

    en: str
    ko: str
    tags: frozenset[str]
    adjectives: tuple[Adjective, ...] = ()


class Verb(NamedTuple):
    """A verb with every surface form spelled out, since Korean conjugation has many irregulars."""

    en: str  # base form, including a stranded preposition ("listen to")
    en_3sg: str
    en_past: str
    ko_stem: str  # for 지 않는다
    ko_present: str
    ko_past: str
    ko_question: str  # present 니-question
    ko_future: str | None  # attributive before 것이다; None for stative verbs
    objects: frozenset[str]  # noun tags this verb accepts
    prep: str = ""  # English preposition before a place; non-empty means Korean 에


SUBJECTS: tuple[Subject, ...] = (
    Subject("I", "나", "1s"),
    Subject("you", "너", "2"),
    Subject("he", "그", "3s"),
    Subject("she", "그녀", "3s"),
    Subject("we", "우리", "1p"),
    Subject("they", "그들", "3p"),
    Subject("Minsu", "민수", "3s"),
    Subject("Jimin", "지민", "3s"),
    Subject("Tom", "톰", "3s"),
    Subject("Anna", "안나", "3s"),
)

_PERSON_ADJ: tuple[Adjective, ...] = (
    ("kind", "친절한"),
    ("famous", "유명한"),
    ("young", "젊은"),
    ("excellent", "훌륭한"),
)
_FOOD_ADJ: tuple[Adjective, ...] = (("fresh", "신선한"), ("delicious", "맛있는"))
_DRINK_ADJ: tuple[Adjective, ...] = (("cold", "차가운"), ("hot", "뜨거운"))
_STORY_ADJ: tuple[Adjective, ...] = (("new", "새"), ("interesting", "재미있는"))
_ITEM_ADJ: tuple[Adjective, ...] = (("new", "새"), ("expensive", "비싼"))
_COLOR_ADJ: tuple[Adjective, ...] = (("red", "빨간"), ("yellow", "노란"))
_ANIMAL_ADJ: tuple[Adjective, ...] = (("big", "큰"), ("small", "작은"), ("cute", "귀여운"))
_FRIEND_ADJ: tuple[Adjective, ...] = (("kind", "친절한"), ("young", "젊은"))


def _nouns(tags: str, adjectives: tuple[Adjective, ...], *pairs: str) -> tuple[Noun, ...]:
    """Build nouns sharing tags and adjectives from alternating English/Korean strings."""
    tag_set = frozenset(tags.split())
    return tuple(Noun(en, ko, tag_set, adjectives) for en, ko in zip(pairs[::2], pairs[1::2]))


# Jobs are only used as copula predicates; their English plural is regular (+s) for all of them.
JOBS: tuple[Noun, ...] = _nouns(
    "job",
    _PERSON_ADJ,
    "student",
    "학생",
    "teacher",
    "선생님",
    "doctor",
    "의사",
    "nurse",
    "간호사",
    "singer",
    "가수",
    "engineer",
    "엔지니어",
    "cook",
    "요리사",
    "farmer",
    "농부",
    "actor",
    "배우",
    "soldier",
    "군인",
    "police officer",
    "경찰관",
    "office worker",
    "회사원",
)

OBJECTS: tuple[Noun, ...] = (
    _nouns("food", _FOOD_ADJ, "apples", "사과", "bananas", "바나나", "fish", "생선")
    + _nouns("food made", _FOOD_ADJ, "bread", "빵", "cake", "케이크", "kimchi", "김치", "noodles", "국수")
    + _nouns("drink", _DRINK_ADJ, "water", "물", "milk", "우유", "coffee", "커피", "tea", "차")
    + _nouns("text writing goods", _STORY_ADJ, "books", "책", "novels", "소설")
    + _nouns("text goods", (), "newspapers", "신문")
    + _nouns("text writing", (), "letters", "편지")
    + _nouns("goods", _ITEM_ADJ, "shoes", "신발", "bags", "가방")
    + _nouns("goods made", _ITEM_ADJ, "chairs", "의자")
    + _nouns("goods drawable", _COLOR_ADJ, "flowers", "꽃")
    + _nouns("drawable", (), "pictures", "그림")
    + _nouns("animal drawable", _ANIMAL_ADJ, "dogs", "개", "cats", "고양이", "birds", "새", "bears", "곰")
    + _nouns("subject", (), "Korean", "한국어", "English", "영어", "math", "수학", "history", "역사")
    + _nouns("subject audio", (), "music", "음악")
    + _nouns("audio song", (), "songs", "노래")
    + _nouns("sport", (), "soccer", "축구", "tennis", "테니스")
    + _nouns("show", _STORY_ADJ, "movies", "영화", "dramas", "드라마")
    + _nouns("person", _FRIEND_ADJ, "friends", "친구")
    + _nouns("person", (), "Minsu", "민수", "Jimin", "지민", "Tom", "톰", "Anna", "안나")
    + _nouns("door", (), "the door", "문", "the window", "창문")
    + _nouns("room", (), "the room", "방", "the kitchen", "부엌", "the house", "집")
    + _nouns(
        "place",
        (),
        "school",
        "학교",
        "the library",
        "도서관",
        "the park",
        "공원",
        "the market",
        "시장",
        "the hospital",
        "병원",
    )
    + _nouns("place city", (), "Seoul", "서울", "Busan", "부산", "London", "런던", "Paris", "파리")
)


def _verb(en: str, en_3sg: str, en_past: str, ko: str, objects: str, prep: str = "") -> Verb:
    """Unpack a compact table row: ``ko`` is "stem present past question future" ("-" = none)."""
    stem, present, past, question, future = ko.split()
    return Verb(
        en,
        en_3sg,
        en_past,
        stem,
        present,
        past,
        question,
        None if future == "-" else future,
        frozenset(objects.split()),
        prep,
    )


VERBS: tuple[Verb, ...] = (
    _verb("eat", "eats", "ate", "먹 먹는다 먹었다 먹니 먹을", "food"),
    _verb("drink", "drinks", "drank", "마시 마신다 마셨다 마시니 마실", "drink"),
    _verb("read", "reads", "read", "읽 읽는다 읽었다 읽니 읽을", "text"),
    _verb("write", "writes", "wrote", "쓰 쓴다 썼다 쓰니 쓸", "writing"),
    _verb("buy", "buys", "bought", "사 산다 샀다 사니 살", "food drink goods"),
    _verb("sell", "sells", "sold", "팔 판다 팔았다 파니 팔", "food drink goods"),
    _verb("make", "makes", "made", "만들 만든다 만들었다 만드니 만들", "made"),
    _verb("watch", "watches", "watched", "보 본다 봤다 보니 볼", "show sport"),
    _verb(
        "like",
        "likes",
        "liked",
        "좋아하 좋아한다 좋아했다 좋아하니 -",
        "food drink animal subject audio sport show person",
    ),
    _verb("learn", "learns", "learned", "배우 배운다 배웠다 배우니 배울", "subject"),
    _verb("teach", "teaches", "taught", "가르치 가르친다 가르쳤다 가르치니 가르칠", "subject"),
    _verb("study", "studies", "studied", "공부하 공부한다 공부했다 공부하니 공부할", "subject"),
    _verb("listen to", "listens to", "listened to", "듣 듣는다 들었다 듣니 들을", "audio"),
    _verb("sing", "sings", "sang", "부르 부른다 불렀다 부르니 부를", "song"),
    _verb("play", "plays", "played", "하 한다 했다 하니 할", "sport"),
    _verb("meet", "meets", "met", "만나 만난다 만났다 만나니 만날", "person"),
    _verb("help", "helps", "helped", "돕 돕는다 도왔다 돕니 도울", "person"),
    _verb("open", "opens", "opened", "열 연다 열었다 여니 열", "door"),
    _verb("close", "closes", "closed", "닫 닫는다 닫았다 닫니 닫을", "door"),
    _verb("clean", "cleans", "cleaned", "청소하 청소한다 청소했다 청소하니 청소할", "room"),
    _verb("draw", "draws", "drew", "그리 그린다 그렸다 그리니 그릴", "drawable"),
    _verb("go", "goes", "went", "가 간다 갔다 가니 갈", "place", prep="to"),
    _verb("live", "lives", "lived", "살 산다 살았다 사니 살", "city", prep="in"),
)

TENSES = ("present", "past", "future")
_README_KEY = ("나", "학생")  # "I am a student." must be in training: it is the README example.


def has_batchim(word: str) -> bool:
    """True if the last Hangul syllable of ``word`` ends in a consonant (selects 은/이/을/이다)."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def _attach(word: str, after_consonant: str, after_vowel: str) -> str:
    """Append the particle/ending allomorph that fits the word's final sound."""
    return word + (after_consonant if has_batchim(word) else after_vowel)


def _sentence(words: list[str], mark: str) -> tuple[str, str]:
    """Join English words into a capitalised sentence; ``mark`` is "." or "?"."""
    text = " ".join(words)
    return text[0].upper() + text[1:] + mark


def _be(subject: Subject, tense: str) -> str:
    """English copula agreeing with the subject (am/is/are, was/were)."""
    if tense == "past":
        return "was" if subject.person in ("1s", "3s") else "were"
    return {"1s": "am", "3s": "is"}.get(subject.person, "are")


def _copula(
    subject: Subject, job: Noun, adj: Adjective | None, tense: str, negative: bool, question: bool
) -> tuple[str, str]:
    """``<subject> is (not) a <job>`` ↔ ``<subject>은/는 <job>이다`` in any tense or as a question."""
    words = [adj[0]] if adj else []
    if subject.person in ("1p", "3p"):
        np_en = " ".join(words + [job.en + "s"])
    else:
        first = (words or [job.en])[0]
        np_en = " ".join(["an" if first[0] in "aeiou" else "a"] + words + [job.en])
    np_ko = f"{adj[1]} {job.ko}" if adj else job.ko
    topic = _attach(subject.ko, "은", "는")
    if question:
        en = _sentence([_be(subject, tense), subject.en, np_en], "?")
        ending = ("이었니", "였니") if tense == "past" else ("이니", "니")
        return en, f"{topic} {_attach(np_ko, *ending)}?"
    aux = ["will", "be"] if tense == "future" else [_be(subject, tense)]
    if negative:
        aux.insert(1, "not")
    en = _sentence([subject.en, *aux, np_en], ".")
    if tense == "future":
        pred = f"{_attach(np_ko, '이', '가')} {'되지 않을' if negative else '될'} 것이다"
    elif negative:
        pred = f"{_attach(np_ko, '이', '가')} {'아니었다' if tense == 'past' else '아니다'}"
    else:
        pred = _attach(np_ko, *(("이었다", "였다") if tense == "past" else ("이다", "다")))
    return en, f"{topic} {pred}."


def _do(subject: Subject, tense: str) -> str:
    """Do-support auxiliary for English negation and questions."""
    return "did" if tense == "past" else "does" if subject.person == "3s" else "do"


def _verb_en(subject: Subject, verb: Verb, tense: str, negative: bool) -> list[str]:
    """English verb group for a statement: agreement, irregular past, do-support, will."""
    if tense == "future":
        return ["will", "not", verb.en] if negative else ["will", verb.en]
    if negative:
        return [_do(subject, tense), "not", verb.en]
    if tense == "past":
        return [verb.en_past]
    return [verb.en_3sg if subject.person == "3s" else verb.en]


def _verb_ko(verb: Verb, tense: str, negative: bool) -> str:
    """Korean sentence-final verb: plain present/past/future, or the 지 않다 negation."""
    if negative:
        return f"{verb.ko_stem}지 " + {"present": "않는다", "past": "않았다", "future": "않을 것이다"}[tense]
    return {"present": verb.ko_present, "past": verb.ko_past, "future": f"{verb.ko_future} 것이다"}[tense]


def _ko_question(verb: Verb, tense: str) -> str:
    """Korean 니-question; the past one is the past form with 다 swapped for 니 (먹었다 → 먹었니)."""
    return verb.ko_question if tense == "present" else verb.ko_past[:-1] + "니"


def _transitive(
    subject: Subject, verb: Verb, noun: Noun, adj: Adjective | None, tense: str, negative: bool, question: bool
) -> tuple[str, str]:
    """``<S> <V> <O>`` ↔ ``<S>은/는 <O>을/를|에 <V>``: the SVO→SOV core of the corpus."""
    obj_en = [w for w in (verb.prep, adj[0] if adj else "", noun.en) if w]
    obj_ko = f"{adj[1]} {noun.ko}" if adj else noun.ko
    obj_ko = obj_ko + "에" if verb.prep else _attach(obj_ko, "을", "를")
    topic = _attach(subject.ko, "은", "는")
    if question:
        en = _sentence([_do(subject, tense), subject.en, verb.en, *obj_en], "?")
        return en, f"{topic} {obj_ko} {_ko_question(verb, tense)}?"
    en = _sentence([subject.en, *_verb_en(subject, verb, tense, negative), *obj_en], ".")
    return en, f"{topic} {obj_ko} {_verb_ko(verb, tense, negative)}."


def _wh_word(verb: Verb) -> tuple[str, str]:
    """(English wh-word, Korean wh-noun) standing in for the verb's missing argument."""
    if verb.prep:
        return "where", "어디"
    if verb.objects == {"person"}:
        return "who", "누구"
    return "what", "무엇"


def _wh_question(subject: Subject, verb: Verb, tense: str) -> tuple[str, str]:
    """``What do you eat?`` ↔ ``너는 무엇을 먹니?``."""
    wh_en, wh_ko = _wh_word(verb)
    wh_ko = wh_ko + "에" if verb.prep else _attach(wh_ko, "을", "를")
    en = _sentence([wh_en, _do(subject, tense), subject.en, verb.en], "?")
    return en, f"{_attach(subject.ko, '은', '는')} {wh_ko} {_ko_question(verb, tense)}?"


def _forms(subject: Subject, has_future: bool) -> list[tuple[str, bool, bool]]:
    """(tense, negative, question) combinations; only second/third persons are asked questions."""
    statements = [(t, neg, False) for t in TENSES if t != "future" or has_future for neg in (False, True)]
    questions = [] if subject.person.startswith("1") else [("present", False, True), ("past", False, True)]
    return statements + questions


@lru_cache(maxsize=1)
def _grammar() -> tuple[tuple[tuple[str, str], str, str], ...]:
    """Every sentence the grammar licenses, as ((subject_ko, noun_ko), en, ko), in a fixed order."""
    out: list[tuple[tuple[str, str], str, str]] = []
    for subject in SUBJECTS:
        for job in JOBS:
            for adj in (None, *job.adjectives):
                for form in _forms(subject, has_future=True):
                    out.append(((subject.ko, job.ko), *_copula(subject, job, adj, *form)))
        for verb in VERBS:
            for noun in OBJECTS:
                if noun.ko == subject.ko or not noun.tags & verb.objects:
                    continue
                for adj in (None, *noun.adjectives):
                    for tense, negative, question in _forms(subject, verb.ko_future is not None):
                        # "I read books." would be both present and past; keep the present reading.
                        if (
                            tense == "past"
                            and not negative
                            and not question
                            and verb.en_past == verb.en
                            and subject.person != "3s"
                        ):
                            continue
                        pair = _transitive(subject, verb, noun, adj, tense, negative, question)
                        out.append(((subject.ko, noun.ko), *pair))
            if not subject.person.startswith("1"):
                for tense in ("present", "past"):
                    out.append(((subject.ko, _wh_word(verb)[1]), *_wh_question(subject, verb, tense)))
    return tuple(out)


def all_pairs() -> list[dict[str, str]]:
    """The complete grammar as ``{"en", "ko"}`` dicts, for lookups and vocabulary building."""
    return [{"en": en, "ko": ko} for _, en, ko in _grammar()]


def generate_pairs(num_pairs: int, seed: int = 0) -> list[dict[str, str]]:
    """Sample ``num_pairs`` distinct sentence pairs from the whole grammar (no held-out split)."""
    grammar = _grammar()
    if num_pairs > len(grammar):
        raise ValueError(f"num_pairs={num_pairs} exceeds the {len(grammar)} sentences the grammar has")
    return [{"en": en, "ko": ko} for _, en, ko in random.Random(seed).sample(grammar, num_pairs)]


def _held_out_keys(rng: random.Random) -> set[tuple[str, str]]:
    """Set aside one subject per noun (wh-words included), never the README pair."""
    nouns = [n.ko for n in JOBS + OBJECTS] + ["무엇", "누구", "어디"]
    held = set()
    for noun in nouns:
        candidates = [s.ko for s in SUBJECTS if s.ko != noun and (s.ko, noun) != _README_KEY]
        held.add((rng.choice(candidates), noun))
    return held


def _to_dataset(rows: list[tuple[tuple[str, str], str, str]]) -> Dataset:
    features = Features({"translation": Translation(languages=["en", "ko"])})
    return Dataset.from_dict({"translation": [{"en": en, "ko": ko} for _, en, ko in rows]}, features=features)


def build_synthetic_en_ko(
    num_train: int = 20000, num_validation: int = 500, num_test: int = 500, seed: int = 0
) -> DatasetDict:
    """Train/validation/test splits whose eval sentences only use held-out word combinations.

    Rows follow the HF translation layout ``{"translation": {"en": ..., "ko": ...}}``. The
    same seed always yields the same dataset; "I am a student." is always in training.
    """
    rng = random.Random(seed)
    held = _held_out_keys(rng)
    train_pool, eval_pool = [], []
    readme = None
    for row in _grammar():
        if row[1] == "I am a student.":
            readme = row
        elif row[0] in held:
            eval_pool.append(row)
        else:
            train_pool.append(row)
    num_eval = num_validation + num_test
    if num_train > len(train_pool) + 1 or num_eval > len(eval_pool):
        raise ValueError(
            f"grammar supports at most {len(train_pool) + 1} train and "
            f"{len(eval_pool)} validation+test sentences for this seed"
        )
    train = rng.sample(train_pool, num_train - 1) + [readme] if num_train else []
    rng.shuffle(train)
    evaluation = rng.sample(eval_pool, num_eval)
    return DatasetDict(
        {
            "train": _to_dataset(train),
            "validation": _to_dataset(evaluation[:num_validation]),
            "test": _to_dataset(evaluation[num_validation:]),
        }
    )
