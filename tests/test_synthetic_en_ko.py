"""Checks of the embedded English→Korean corpus, written from Korean grammar, not from its code.

Sentences are re-parsed here with an independent batchim computation, so a wrong particle,
copula or held-out leak is caught from the text alone.
"""

import re

import pytest

from hf_rnn.data.synthetic_en_ko import all_pairs, build_synthetic_en_ko, generate_pairs

# particle -> whether it must follow a consonant-final (batchim) syllable
PARTICLE_NEEDS_BATCHIM = {"은": True, "는": False, "을": True, "를": False, "이": True, "가": False}
COPULA_ENDINGS = {True: {"이다", "이었다", "이니", "이었니"}, False: {"다", "였다", "니", "였니"}}


def batchim(syllable: str) -> bool:
    """Hangul syllable = 0xAC00 + (initial*21 + medial)*28 + final; final 0 means none."""
    assert "가" <= syllable <= "힣", syllable
    return (ord(syllable) - 0xAC00) % 28 != 0


def check_particle(token: str) -> str:
    """Assert the token's particle fits its noun; return the bare noun."""
    noun, particle = token[:-1], token[-1]
    if particle != "에":
        assert batchim(noun[-1]) == PARTICLE_NEEDS_BATCHIM[particle], token
    return noun


def split_ko(ko: str) -> tuple[str, str | None, list[str]]:
    """(subject token, first particle-marked argument token or None, all tokens)."""
    tokens = ko[:-1].split()
    argument = next((t for t in tokens[1:] if t[-1] in "을를이가에"), None)
    return tokens[0], argument, tokens


@pytest.fixture(scope="module")
def grammar() -> list[dict[str, str]]:
    return all_pairs()


@pytest.fixture(scope="module")
def copula_nouns(grammar) -> set[str]:
    """Nouns seen with subject particle 이/가 (아니다, 되다): the copula predicates."""
    nouns = set()
    for pair in grammar:
        _, argument, _ = split_ko(pair["ko"])
        if argument and argument[-1] in "이가":
            nouns.add(argument[:-1])
    return nouns


def content_key(ko: str, copula_nouns: set[str]) -> tuple[str, str]:
    """(subject, noun) of a sentence, read off the Korean with particles checked."""
    subject_token, argument, tokens = split_ko(ko)
    assert subject_token[-1] in "은는", ko
    subject = check_particle(subject_token)
    if argument is not None:
        return subject, check_particle(argument)
    predicate = tokens[-1]  # affirmative copula: noun + 이다/다/...
    matches = [
        n for n in copula_nouns if predicate.startswith(n) and predicate[len(n) :] in COPULA_ENDINGS[batchim(n[-1])]
    ]
    assert len(matches) == 1, ko
    return subject, matches[0]


@pytest.fixture(scope="module")
def dataset():
    return build_synthetic_en_ko()


def rows(split) -> list[dict[str, str]]:
    return list(split["translation"])


def test_split_sizes_and_layout(dataset):
    assert {k: len(v) for k, v in dataset.items()} == {"train": 20000, "validation": 500, "test": 500}
    row = dataset["train"][0]
    assert set(row) == {"translation"} and set(row["translation"]) == {"en", "ko"}
    small = build_synthetic_en_ko(num_train=50, num_validation=7, num_test=3, seed=3)
    assert [len(small[s]) for s in ("train", "validation", "test")] == [50, 7, 3]


def test_deterministic_per_seed(dataset):
    again = build_synthetic_en_ko()
    for split in ("train", "validation", "test"):
        assert rows(dataset[split]) == rows(again[split])
    assert rows(build_synthetic_en_ko(seed=1)["train"]) != rows(dataset["train"])
    assert generate_pairs(100, seed=5) == generate_pairs(100, seed=5)
    assert generate_pairs(100, seed=5) != generate_pairs(100, seed=6)


def test_generate_pairs_format():
    pairs = generate_pairs(2000, seed=0)
    assert len({p["en"] for p in pairs}) == 2000
    for p in pairs:
        assert set(p) == {"en", "ko"}
        assert p["en"][0].isupper() and p["en"][-1] in ".?", p
        assert p["ko"][-1] == p["en"][-1], p
    with pytest.raises(ValueError):
        generate_pairs(10**7)


def test_particles_and_copula_follow_batchim(grammar, copula_nouns):
    assert {"학생", "의사", "선생님", "간호사"} <= copula_nouns
    for pair in grammar:
        content_key(pair["ko"], copula_nouns)  # asserts every 은/는, 을/를, 이/가, 이다/다
        _, argument, tokens = split_ko(pair["ko"])
        if argument and argument[-1] in "이가":  # subject particle only with 아니다 / 되다
            assert tokens[tokens.index(argument) + 1] in {"아니다", "아니었다", "될", "되지"}, pair


def test_copula_tense_matches_english(grammar, copula_nouns):
    for pair in grammar:
        en, ko = pair["en"], pair["ko"]
        if split_ko(ko)[1] is not None or not re.match(r"(\w+ )?(am|is|are|was|were)\b", en, re.I):
            continue
        past = bool(re.search(r"\b(was|were)\b", en, re.I))
        assert ("었" in ko[-5:] or "였" in ko[-5:]) == past, pair
        assert ko.endswith("니?") == en.endswith("?"), pair


def test_english_articles_and_do_support(grammar):
    for pair in grammar:
        words = pair["en"][:-1].split()
        for article, following in zip(words, words[1:]):
            if article.lower() == "a":
                assert following[0] not in "aeiou", pair
            if article.lower() == "an":
                assert following[0] in "aeiou", pair
        for aux, following in zip(words, words[1:]):
            if aux.lower() in {"do", "does", "did", "will"} and following != "not":
                assert not following.endswith("s"), pair  # base form after auxiliaries


HAND_WRITTEN = {
    "I am a student.": "나는 학생이다.",
    "I am a doctor.": "나는 의사다.",
    "I am not a student.": "나는 학생이 아니다.",
    "We were not doctors.": "우리는 의사가 아니었다.",
    "They are police officers.": "그들은 경찰관이다.",
    "Tom is an engineer.": "톰은 엔지니어다.",
    "She is a kind nurse.": "그녀는 친절한 간호사다.",
    "Jimin will be a teacher.": "지민은 선생님이 될 것이다.",
    "I will not be an actor.": "나는 배우가 되지 않을 것이다.",
    "Are you a student?": "너는 학생이니?",
    "Were you a singer?": "너는 가수였니?",
    "I eat apples.": "나는 사과를 먹는다.",
    "I ate apples.": "나는 사과를 먹었다.",
    "I do not eat apples.": "나는 사과를 먹지 않는다.",
    "Do you eat apples?": "너는 사과를 먹니?",
    "What do you eat?": "너는 무엇을 먹니?",
    "He goes to school.": "그는 학교에 간다.",
    "Tom went to the park.": "톰은 공원에 갔다.",
    "Anna lives in Seoul.": "안나는 서울에 산다.",
    "Where does she live?": "그녀는 어디에 사니?",
    "They made bread.": "그들은 빵을 만들었다.",
    "He will not drink cold water.": "그는 차가운 물을 마시지 않을 것이다.",
    "Did Minsu watch movies?": "민수는 영화를 봤니?",
    "Anna helped Tom.": "안나는 톰을 도왔다.",
    "Did they help Anna?": "그들은 안나를 도왔니?",
    "Who do you meet?": "너는 누구를 만나니?",
    "He listens to music.": "그는 음악을 듣는다.",
    "Minsu sings songs.": "민수는 노래를 부른다.",
    "She studies math.": "그녀는 수학을 공부한다.",
    "You opened the door.": "너는 문을 열었다.",
    "I like big dogs.": "나는 큰 개를 좋아한다.",
    "We sold red flowers.": "우리는 빨간 꽃을 팔았다.",
    "I read books.": "나는 책을 읽는다.",
    "He read books.": "그는 책을 읽었다.",
    "He does not read books.": "그는 책을 읽지 않는다.",
}


def test_hand_written_translations(grammar):
    lookup = {p["en"]: p["ko"] for p in grammar}
    assert len(lookup) == len(grammar)  # one Korean reading per English sentence
    for en, ko in HAND_WRITTEN.items():
        assert lookup.get(en) == ko, en


def test_readme_example_in_train(dataset):
    assert {"en": "I am a student.", "ko": "나는 학생이다."} in rows(dataset["train"])
    assert {"en": "I am a student.", "ko": "나는 학생이다."} in rows(
        build_synthetic_en_ko(num_train=10, num_validation=1, num_test=1, seed=4)["train"]
    )


def test_eval_combinations_unseen_in_train(dataset, copula_nouns):
    train = rows(dataset["train"])
    evaluation = rows(dataset["validation"]) + rows(dataset["test"])
    train_keys = {content_key(p["ko"], copula_nouns) for p in train}
    eval_keys = {content_key(p["ko"], copula_nouns) for p in evaluation}
    assert not train_keys & eval_keys
    assert {s for s, _ in eval_keys} <= {s for s, _ in train_keys}
    assert {n for _, n in eval_keys} <= {n for _, n in train_keys}
    assert not {p["en"] for p in train} & {p["en"] for p in evaluation}
    assert not {p["ko"] for p in train} & {p["ko"] for p in evaluation}
    assert len({p["en"] for p in evaluation}) == len(evaluation)


def test_every_eval_word_appears_in_train(dataset):
    def vocab(pairs: list[dict[str, str]], lang: str) -> set[str]:
        return {w for p in pairs for w in re.findall(r"\w+", p[lang].lower())}

    train = rows(dataset["train"])
    for split in ("validation", "test"):
        for lang in ("en", "ko"):
            assert vocab(rows(dataset[split]), lang) <= vocab(train, lang), (split, lang)
