"""Round trips through the real huggingface_hub / transformers HTTP code paths, against the offline test hub."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, create_repo, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from transformers import BertConfig, BertModel

INPUT_IDS = torch.tensor([[1, 5, 7, 9, 2, 49]])


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    return BertModel(config).eval()


@torch.no_grad()
def hidden_states(model: BertModel) -> torch.Tensor:
    return model(INPUT_IDS).last_hidden_state


def test_push_to_hub_then_from_pretrained_in_process_and_subprocess(hub_server, tmp_path):
    model = tiny_bert()
    expected = hidden_states(model)

    model.push_to_hub("user/tiny")
    pushed = hub_server.commits[-1]
    assert (pushed["repo_id"], pushed["revision"]) == ("user/tiny", "main")
    assert {"config.json", "model.safetensors"} <= set(pushed["added"])

    # Same process: the huggingface_hub / transformers modules were imported before the fixture patched them.
    assert torch.equal(hidden_states(BertModel.from_pretrained("user/tiny")), expected)

    # Pushing identical weights again is a no-op: preupload returns the remote oids, the client skips the commit.
    nb_commits = len(hub_server.commits)
    model.push_to_hub("user/tiny")
    assert len(hub_server.commits) == nb_commits

    # Fresh interpreter, fresh cache: only the environment variables tell it where the Hub is.
    child_home = tmp_path / "child_hf_home"
    env = {**os.environ, "HF_HOME": str(child_home), "HF_HUB_CACHE": str(child_home / "hub")}
    out = tmp_path / "child_out.pt"
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import BertModel
        model = BertModel.from_pretrained("user/tiny")
        with torch.no_grad():
            torch.save(model(torch.tensor({INPUT_IDS.tolist()})).last_hidden_state, sys.argv[1])
        """
    )
    nb_downloads = sum(method == "GET" and "/resolve/" in path for method, path in hub_server.requests)
    subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, timeout=120)
    assert torch.equal(torch.load(out), expected)
    assert sum(method == "GET" and "/resolve/" in path for method, path in hub_server.requests) > nb_downloads
    assert (child_home / "hub" / "models--user--tiny").is_dir()
    assert hub_server.unhandled == []


def test_upload_folder_then_snapshot_download(hub_server, tmp_path):
    folder = tmp_path / "to_upload"
    files = {
        "README.md": b"---\nlicense: apache-2.0\ntags:\n- hf-rnn\n- test\n---\n# Folder\n\nSome text.\n",
        "config.json": b'{"hidden_size": 8}\n',
        "weights.bin": bytes(range(256)) * 4,
        "sub/nested/notes.txt": "nested \u2713\n".encode(),
        "sub/empty.txt": b"",
    }
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)

    api = HfApi()
    repo_url = api.create_repo("user/folder")
    assert repo_url.repo_id == "user/folder"
    assert api.create_repo("user/folder", exist_ok=True).repo_id == "user/folder"  # 409 => exist_ok
    commit = api.upload_folder(folder_path=folder, repo_id="user/folder", commit_message="Add folder")
    assert commit.oid == hub_server.commits[-1]["oid"]
    assert hub_server.commits[-1]["summary"] == "Add folder"
    on_hub = hub_server.files("user/folder")
    assert on_hub.pop(".gitattributes") and on_hub == files

    snapshot = Path(snapshot_download("user/folder"))
    downloaded = {p.relative_to(snapshot).as_posix(): p.read_bytes() for p in snapshot.rglob("*") if p.is_file()}
    assert downloaded.pop(".gitattributes")  # created with the repo, like on the Hub
    assert downloaded == files
    assert snapshot.name == commit.oid

    assert sorted(api.list_repo_files("user/folder")) == sorted([".gitattributes", *files])
    assert [f.rfilename for f in api.model_info("user/folder").siblings] == sorted([".gitattributes", *files])
    info = api.get_paths_info("user/folder", ["sub", "config.json", "missing.txt"])
    assert sorted((i.path, type(i).__name__) for i in info) == [("config.json", "RepoFile"), ("sub", "RepoFolder")]
    assert hub_server.unhandled == []


def test_model_card_push_and_load(hub_server):
    create_repo("user/tiny")  # module-level function: bound to huggingface_hub.hf_api.api
    card = ModelCard("---\nlicense: mit\ntags:\n- hf-rnn\n---\n\n# Tiny\n\nA tiny test model.\n")
    card.push_to_hub("user/tiny")
    assert hub_server.commits[-1]["added"] == ["README.md"]

    loaded = ModelCard.load("user/tiny")
    assert loaded.data.license == "mit"
    assert loaded.data.tags == ["hf-rnn"]
    assert str(loaded) == str(card)
    assert hub_server.unhandled == []


def test_errors_look_like_the_hub(hub_server):
    api = HfApi()
    assert api.whoami()["name"] == "user"
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/missing")
    api.create_repo("user/errors")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("user/errors", "missing.txt")
    with pytest.raises(ValueError, match="Invalid metadata"):  # validate-yaml rejects non-mapping front matter
        api.upload_file(path_or_fileobj=b"---\n- a list\n---\n", path_in_repo="README.md", repo_id="user/errors")
    with pytest.raises(Exception, match="401"):  # writes need a token, like on the Hub
        api.create_repo("user/no-token", token=False)
