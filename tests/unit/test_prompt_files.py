"""Prompt suites: .txt / .csv / .json load in order with ids; every error names the file and the line/item."""

from __future__ import annotations

import json

import pytest

from streamvid.core.config import ConfigError
from streamvid.core.prompts import PromptEntry, PromptFileError, load_prompts


def test_txt_skips_blank_and_comment_lines_and_numbers_prompts(tmp_path):
    path = tmp_path / "suite.txt"
    path.write_text("# shapes\n a red circle moving left \n\nA fantasy landscape\na fantasy landscape\n")
    entries = load_prompts(path)
    assert entries == [
        PromptEntry("a red circle moving left", "0000", 0),
        PromptEntry("A fantasy landscape", "0001", 1),  # VBench has both spellings: distinct prompts
        PromptEntry("a fantasy landscape", "0002", 2),
    ]


def test_csv_reads_prompt_and_id_columns_including_quoted_commas(tmp_path):
    path = tmp_path / "suite.csv"
    path.write_text('id,prompt,extra\nr1,"a red circle moving left, then up",x\nb2,a blue square,y\n')
    assert [(e.id, e.prompt) for e in load_prompts(path)] == [
        ("r1", "a red circle moving left, then up"), ("b2", "a blue square")]


def test_json_strings_and_objects_and_vbench_prompt_en(tmp_path):
    strings = tmp_path / "s.json"
    strings.write_text(json.dumps(["a", "b"]))
    assert [e.prompt for e in load_prompts(strings)] == ["a", "b"]
    objects = tmp_path / "o.json"
    objects.write_text(json.dumps([{"prompt_en": "a dog", "dimension": ["x"]}, {"prompt": "a cat", "id": 7}]))
    assert [(e.prompt, e.id) for e in load_prompts(objects)] == [("a dog", "0000"), ("a cat", "7")]


@pytest.mark.parametrize("name, text, message", [
    ("dup.txt", "a\n\nb\na\n", "dup.txt: line 4: duplicate prompt 'a' (first at line 1)"),
    ("nohead.csv", "text\nA\n", "nohead.csv:1: the header must have a 'prompt' column"),
    ("empty.csv", "prompt,id\na,1\n ,2\n", "empty.csv:3: empty prompt"),
    ("cells.csv", "prompt\na\nb,c\n", "cells.csv:3: more cells than the 1 header columns"),
    ("dupid.csv", "prompt,id\na,x\nb,x\n", "dupid.csv: line 3: duplicate id 'x' (first at line 2)"),
    ("bad.json", '[\n "a",\n "b"\n "c"]', "bad.json:4: invalid JSON"),
    ("item.json", '[{"prompt": "a"}, {"text": "b"}]', "item.json: item [1] needs a string 'prompt'"),
    ("mixed.json", '["a", {"prompt": "b"}]', "mixes strings and objects"),
    ("dict.json", '{"prompt": "a"}', "top level must be a list"),
    ("blank.txt", "# only a comment\n\n", "holds no prompts"),
    ("suite.yaml", "- a\n", "unsupported extension '.yaml'"),
])
def test_errors_name_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PromptFileError) as err:
        load_prompts(path)
    assert message in str(err.value)
    assert isinstance(err.value, ConfigError)  # console scripts print it as one line, exit code 2
    assert "\n" not in str(err.value)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(PromptFileError, match="prompt file not found: .*missing.txt"):
        load_prompts(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(PromptFileError, match="latin.txt: not UTF-8"):
        load_prompts(latin)
