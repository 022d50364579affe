"""Bad input, fuzzed: config loading (`opskit.config.load`) fails only with `ConfigError`, whose
message is one printable line, whatever the file holds, and in bounded memory.

Three kinds of input: random YAML text; documents built from the schema itself (every model,
field and literal of `Config`, with valid examples and junk mixed in, so validation goes deep);
and random mutations of `configs/opskit.example.yaml`, both of its structure and of its text.
"""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path

import pydantic
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from opskit import errors, untrusted
from opskit.config import load
from opskit.config.schema import Config
from tests.faults.fuzzing import MIB, fuzz, peak_memory

EXAMPLE_PATH = Path(__file__).parents[2] / "configs" / "opskit.example.yaml"
EXAMPLE_TEXT = EXAMPLE_PATH.read_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)


def check_parse(text: str) -> Config | None:
    """Parse `text`: a `Config`, or a `ConfigError` whose message is one printable line.
    Any other exception fails the test."""
    try:
        config = load.parse_config(text)
    except errors.ConfigError as exc:
        message = str(exc)
        assert message.startswith("config <config>"), message[:200]
        assert not untrusted.has_control_characters(message), message[:200]
        assert exc.exit_code == errors.EXIT_USAGE
        return None
    assert isinstance(config, Config)
    return config


# --- junk and values from the schema -------------------------------------------------------------

JUNK_STRINGS = [
    "",
    " ",
    "s3://[",
    "s3://",
    "s3:///x",
    "file://",
    "ftp://x/y",
    "http://[::1",
    "//x",
    "~/x",
    "../rel",
    "/",
    "\x1b[31mred\x9b",
    "\u2028",
    "daily at 25:00",
    "every 0 hours",
    "every 9" * 3,
    "hourly at :60",
    "0-65536",
    "1-",
    "65535-1",
    ":0",
    "[::1]:9133",
    "host:port",
    "1" * 5000,
    "age1",
    "age1" + "q" * 58,
    "ssh-ed25519 AAAA",
    "ssh-rsa " + "A" * 300,
    "AGE-SECRET-KEY-1X",
    "5MiB",
    "64 mib",
    "1 GiB",
    "-1MiB",
    "9" * 30 + "GiB",
    "aws:kms",
    "30d",
    "1y2m",
    "0d",
    "x" * 300,
    "/not.prom",
    "rel.prom",
    "/x.prom",
    "yes",
    "on",
    "2020-13-01",
]


def _schema_strings(annotation: typing.Any, found: set[str]) -> None:
    """Collect every string the schema gives as an example or a literal choice."""
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        if annotation.__name__ in found:
            return
        found.add(annotation.__name__)
        for field in annotation.model_fields.values():
            for value in field.examples or []:
                _strings_in(value, found)
            _schema_strings(field.annotation, found)
        return
    for argument in typing.get_args(annotation):
        if isinstance(argument, str):
            found.add(argument)
        else:
            _schema_strings(argument, found)


def _strings_in(value: object, found: set[str]) -> None:
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings_in(key, found)
            _strings_in(item, found)
    elif isinstance(value, list):
        for item in value:
            _strings_in(item, found)


def _strip(annotation: typing.Any) -> typing.Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


_found: set[str] = set()
_schema_strings(Config, _found)
SCHEMA_STRINGS = sorted(_found)

strings = st.one_of(
    st.sampled_from(SCHEMA_STRINGS), st.sampled_from(JUNK_STRINGS), st.text(max_size=12)
)
numbers = st.one_of(
    st.integers(min_value=-3, max_value=10),
    st.sampled_from([0, 1, 5 << 20, 5 << 30, 64, 65, 2**63, -(2**63)]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, strings),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(strings, children, max_size=3)
    ),
    max_leaves=6,
)


def schema_values(annotation: typing.Any) -> st.SearchStrategy:
    """Values for a field of this annotation: mostly of its type (a model's fields, list
    items, literal choices), sometimes junk of any type, sometimes an unknown key."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return st.one_of(st.deferred(lambda: _models[annotation]), junk)
    if origin is list:
        return st.one_of(st.lists(schema_values(arguments[0]), max_size=3), junk)
    if origin is dict:
        return st.one_of(
            st.dictionaries(strings, schema_values(arguments[1]), max_size=3),
            junk,
        )
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[schema_values(member) for member in arguments])
    if origin is typing.Literal:
        return st.one_of(st.sampled_from(arguments), junk)
    if annotation is bool:
        return st.one_of(st.booleans(), junk)
    if annotation in (int, float):
        return st.one_of(numbers, numbers, junk)
    if annotation is str:
        return st.one_of(strings, strings, junk)
    return junk


def _models_of(model: type[pydantic.BaseModel], found: dict) -> None:
    if model in found:
        return
    found[model] = None
    optional = {name: schema_values(field.annotation) for name, field in model.model_fields.items()}
    typos = st.dictionaries(
        st.sampled_from([name[:-1] + "x" for name in model.model_fields] + ["extra", "On"]),
        junk,
        max_size=1,
    )
    found[model] = st.builds(
        lambda fields, extra: {**fields, **extra},
        st.fixed_dictionaries({}, optional=optional),
        typos,
    )
    for field in model.model_fields.values():
        for member in [field.annotation, *_all_arguments(field.annotation)]:
            member = _strip(member)
            if isinstance(member, type) and issubclass(member, pydantic.BaseModel):
                _models_of(member, found)


def _all_arguments(annotation: typing.Any) -> list[typing.Any]:
    result = []
    for argument in typing.get_args(annotation):
        result += [argument, *_all_arguments(argument)]
    return result


_models: dict = {}
_models_of(Config, _models)
config_documents = _models[Config]


def dump(document: object) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


# --- whole documents ------------------------------------------------------------------------------


@fuzz(150)
@given(document=config_documents)
@example(document={"jobs": [{"target": "s3://["}]})
@example(
    document={"jobs": [{"name": "a", "volumes": ["v"], "target": "s3://[", "schedule": "hourly"}]}
)
@example(document={"targets": {"t": {"url": "s3://b", "part_size": "9" * 5000 + "MiB"}}})
@example(document={"notifications": {True: ["failure"], "on": []}})
def test_parse_config_of_schema_documents_fails_only_with_config_error(document):
    """Documents built from the schema (valid values mixed with junk, unknown keys, wrong
    types) give a `Config` or one `ConfigError`; a `Config` survives a dump and reload."""
    config = check_parse(dump(document))
    if config is not None:
        assert Config.model_validate(config.model_dump()) == config


YAML_TOKENS = [
    "&a ",
    "*a",
    "<<: *a",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!timestamp ",
    "!!binary ",
    "!!python/object:os.system ",
    "!!set ",
    "!!omap ",
    "!!pairs ",
    "!!str ",
    "!custom ",
    "? ",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    "\t",
    "\n",
    "\n  ",
    "#",
    "'",
    '"',
    "|",
    ">",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "\x00",
    "\ufeff",
    "~",
    "2020-13-01",
    "1" * 5000,
    "0x",
    "yes",
]
yaml_tokens = st.one_of(st.sampled_from(YAML_TOKENS), st.text(max_size=4))


@fuzz(400)
@given(text=st.lists(yaml_tokens, max_size=30).map("".join))
@example(text="a: !!timestamp \n")
@example(text="a: !!bool \n")
@example(text="a: !!int \n")
@example(text="a: " + "1" * 5000)
@example(text="jobs: [" + "[" * 50_000)
def test_parse_config_of_random_yaml_fails_only_with_config_error(text):
    """Random YAML-ish text (tags of every kind, anchors, aliases, merge keys, control
    characters) gives a `Config` or one `ConfigError`, never a PyYAML ValueError,
    AttributeError or KeyError."""
    check_parse(text)


# --- mutations of the example file ---------------------------------------------------------------


def _places(node: object, path: tuple = ()) -> list[tuple]:
    """Every (container path, key) in the document."""
    places = []
    if isinstance(node, dict):
        for key, value in node.items():
            places.append((path, key))
            places += _places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            places.append((path, index))
            places += _places(value, (*path, index))
    return places


def _container(document: object, path: tuple) -> typing.Any:
    for key in path:
        document = document[key]  # type: ignore[index]
    return document


EXAMPLE_PLACES = len(_places(EXAMPLE))
mutation_kinds = st.sampled_from(["delete", "replace", "retype", "duplicate", "unknown", "swap"])


@st.composite
def mutated_examples(draw) -> dict:
    """The example config with a few values deleted, replaced by junk or schema values,
    wrapped in a list, duplicated, or given unknown keys."""
    document = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        places = _places(document)
        if not places:
            break
        path, key = places[draw(st.integers(0, len(places) - 1))]
        container = _container(document, path)
        kind = draw(mutation_kinds)
        if kind == "delete":
            del container[key]
        elif kind == "replace":
            container[key] = draw(st.one_of(junk, strings))
        elif kind == "retype":
            container[key] = [container[key]]
        elif kind == "duplicate" and isinstance(container, list):
            container.insert(key, copy.deepcopy(container[key]))
        elif kind == "unknown" and isinstance(container, dict):
            container[draw(strings)] = draw(junk)
        elif kind == "swap" and isinstance(container, dict) and isinstance(key, str):
            container[key[::-1]] = container.pop(key)
    return document


@fuzz(200)
@given(document=mutated_examples())
def test_parse_config_of_mutated_example_fails_only_with_config_error(document):
    """The example file with values deleted, retyped, duplicated (two jobs of one name),
    replaced by junk: a `Config` or one `ConfigError`, never a traceback."""
    config = check_parse(dump(document))
    if config is not None:
        assert Config.model_validate(config.model_dump()) == config


EXAMPLE_LINES = EXAMPLE_TEXT.splitlines(keepends=True)
text_mutations = st.sampled_from(["delete", "duplicate", "indent", "dedent", "insert", "cut"])


@st.composite
def mutated_example_texts(draw) -> str:
    """The example file's text with lines deleted, duplicated, re-indented, tokens inserted,
    or the file cut short."""
    lines = list(EXAMPLE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(text_mutations)
        if kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "indent":
            lines[index] = "  " + lines[index]
        elif kind == "dedent":
            lines[index] = lines[index][2:]
        elif kind == "insert":
            column = draw(st.integers(0, len(lines[index])))
            line = lines[index]
            lines[index] = line[:column] + draw(yaml_tokens) + line[column:]
        else:
            lines = lines[:index] + [lines[index][: draw(st.integers(0, len(lines[index])))]]
        if not lines:
            break
    return "".join(lines)


@fuzz(200)
@given(text=mutated_example_texts())
def test_parse_config_of_mutated_example_text_fails_only_with_config_error(text):
    """The example file's text, mutated line by line: a `Config` or one `ConfigError`."""
    check_parse(text)


def test_the_example_parses_unmutated():
    """The mutations start from a valid file (else every case above would be an error)."""
    assert isinstance(check_parse(EXAMPLE_TEXT), Config)
    assert isinstance(check_parse(dump(EXAMPLE)), Config)
    assert EXAMPLE_PLACES > 50


@fuzz(60)
@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfe")
@example(data=b"jobs: ['\xc3\x28']\n")
def test_load_config_file_of_random_bytes_fails_only_with_config_error(tmp_path_factory, data):
    """A config file of random bytes (not UTF-8, NULs) gives a `Config` or `ConfigError`."""
    path = tmp_path_factory.getbasetemp() / "fuzz-config.yaml"
    path.write_bytes(data)
    try:
        load.load_config_file(path)
    except errors.ConfigError as exc:
        assert not untrusted.has_control_characters(str(exc))


# --- bounded memory ------------------------------------------------------------------------------


def test_parse_config_refuses_an_alias_bomb_in_bounded_memory():
    """A billion-laughs config (10 levels of 10 aliases) fails at once with `ConfigError`."""
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in range(1, 11):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    text = "\n".join(lines) + "\nprotected_tags: *l10\n"
    peak, outcome = peak_memory(lambda: load.parse_config(text))

    assert isinstance(outcome, errors.ConfigError), outcome
    assert "aliases" in str(outcome)
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_load_config_file_refuses_a_huge_file_reading_only_its_bound(tmp_path):
    """A 1 GiB config (sparse: `--config` of the wrong file) is refused having read only
    `MAX_CONFIG_BYTES` of it."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as stream:
        stream.truncate(1 << 30)
    peak, outcome = peak_memory(lambda: load.load_config_file(path))

    assert isinstance(outcome, errors.ConfigError), outcome
    assert "larger than 1 MiB" in str(outcome)
    assert peak < load.MAX_CONFIG_BYTES + MIB, f"peak {peak / MIB:.1f} MiB"


def test_parse_config_refuses_deep_nesting_in_bounded_memory():
    """YAML nested 100,000 deep fails with `ConfigError`, not a RecursionError."""
    peak, outcome = peak_memory(lambda: load.parse_config("jobs: " + "[" * 100_000))

    assert isinstance(outcome, errors.ConfigError), outcome
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_parse_config_memory_per_invalid_value_stays_bounded():
    """A config of many invalid jobs makes one error per problem: measured on 2,000 jobs and
    scaled to `MAX_CONFIG_NODES` jobs (the most a config can hold), the peak stays under
    512 MiB, and the message lists `MAX_PROBLEMS_SHOWN` problems and a count, not all 6,000."""
    jobs = 2_000
    text = "jobs: [" + "{}, " * jobs + "]"
    peak, outcome = peak_memory(lambda: load.parse_config(text))

    assert isinstance(outcome, errors.ConfigError), outcome
    message = str(outcome)
    assert message.count("at 'jobs[") == load.MAX_PROBLEMS_SHOWN
    assert message.endswith(f"and {jobs * 3 - load.MAX_PROBLEMS_SHOWN:,} more problems")
    projected = peak / jobs * load.MAX_CONFIG_NODES
    assert projected < 512 * MIB, f"{peak / jobs:.0f} bytes a job: {projected / MIB:.0f} MiB"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: 2020-13-01\n", "cannot read '2020-13-01' as !!timestamp"),
        ("a: !!timestamp x\n", "cannot read 'x' as !!timestamp"),
        ("a: !!int x\n", "cannot read 'x' as !!int"),
        ("a: !!bool \n", "cannot read '' as !!bool"),
        ("a: " + "1" * 5000 + "\n", "cannot read '1111"),
        ("jobs: [{target: 's3://['}]\n", "'s3://[' is not a URL"),
    ],
)
def test_parse_config_names_values_that_crashed_it(text, problem):
    """Inputs that raised ValueError/AttributeError/KeyError out of `parse_config` before the
    fixes of issue 12 now give a `ConfigError` naming the value (and its line)."""
    with pytest.raises(errors.ConfigError, match="^config <config>") as raised:
        load.parse_config(text)
    assert problem in str(raised.value)
