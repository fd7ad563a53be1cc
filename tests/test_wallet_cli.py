"""The wallet commands (``datanet``, ``model``, ``attribute``, ``claim``): amounts, keys, the folder
walk, event and error decoding, the failures an operator meets (no key, no node, a JSON-RPC refusal,
no receipt, a chain without the precompiles), and the whole flow against a real node, its
precompiles' custom errors included."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak
from typer.testing import CliRunner

from anvil_process import running_anvil
from conftest import running_node
from node_process import run_cli
from openledger_node import wallet_cli
from openledger_node.cli import app
from openledger_node.devkeys import DEV_ACCOUNTS
from openledger_node.wallet_cli import (
    DATANET_REGISTRY, PROOF_OF_ATTRIBUTION, WalletError, check_contribution, contribution_files, decode_log,
    decode_revert, format_amount, load_account, parse_amount,
)

OWNER_ADDRESS, OWNER_KEY = DEV_ACCOUNTS[0]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Only what a test sets: no key, password or URL from the environment that runs the tests."""
    for name in ("OPENLEDGER_PRIVATE_KEY", "OPENLEDGER_KEYSTORE_PASSWORD", "OPENLEDGER_RPC"):
        monkeypatch.delenv(name, raising=False)


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    return CliRunner().invoke(app, [str(arg) for arg in args], env=env, input=input)


def assert_one_error_line(result, *expected: str) -> str:
    """Exit 1 and one ``error: ...`` line on stderr containing each of ``expected``; no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def key_of(index: int) -> dict[str, str]:
    return {"OPENLEDGER_PRIVATE_KEY": DEV_ACCOUNTS[index][1]}


def write_folder(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def create_datanet_and_mine(node) -> None:
    """Datanet 1 (owner dev 0, no minimum stake) on a node with mining off, through its dev signer."""
    data = wallet_cli.registry().interface.functions["createDatanet"].encode_call("Recipes", "", 0)
    node.rpc("eth_sendTransaction", {"from": OWNER_ADDRESS, "to": DATANET_REGISTRY, "data": "0x" + data.hex()})
    node.rpc("evm_mine")


# ----------------------------------------------------------------------------- amounts


@pytest.mark.parametrize("text, wei", [
    ("0", 0), ("1000", 1000), ("1000wei", 1000), ("2gwei", 2 * 10**9), ("1.5open", 15 * 10**17),
    ("1.5 OPEN", 15 * 10**17), ("0.000000000000000001open", 1), (".5gwei", 5 * 10**8), ("3kwei", 3000),
    ("7mwei", 7 * 10**6), ("1.0wei", 1), (str(2**256 - 1), 2**256 - 1),
    ("115792089237316195423570985008687907853269984665640564039457.584007913129639935open", 2**256 - 1),
])
def test_amounts_are_wei_or_a_number_with_a_unit(text, wei):
    assert parse_amount(text) == wei


@pytest.mark.parametrize("text, why", [
    ("1.5", "not a whole number of wei"), ("0.5gwei0", "give wei"), ("1.0000000000000000001open", "not a whole number"),
    ("-1", "give wei"), ("1e18", "give wei"), ("2 ether", "unknown unit"), ("", "give wei"), ("open", "give wei"),
    (str(2**256), "more than 2**256 - 1"), ("1." + "0" * 300 + "1open", "not a whole number"), ("0x10", "give wei"), ("2 opens", "unknown unit"),
])
def test_fractions_of_a_wei_and_unknown_units_are_refused(text, why):
    with pytest.raises(WalletError, match="invalid amount") as caught:
        parse_amount(text)
    assert why in str(caught.value)


def test_amounts_print_exactly_in_open():
    assert format_amount(15 * 10**17) == "1.5 OPEN"
    assert format_amount(1) == "0.000000000000000001 OPEN"
    assert format_amount(0) == "0 OPEN"
    assert format_amount(3 * 10**18) == "3 OPEN"


def test_a_bad_amount_is_one_error_line_before_any_key_or_node_is_needed():
    result = cli("datanet", "create", "Recipes", "--min-stake", "0.5wei", "--rpc", closed_port_url())
    assert_one_error_line(result, "invalid amount '0.5wei'", "not a whole number of wei")


# ----------------------------------------------------------------------------- keys


@pytest.fixture
def keystore(tmp_path) -> Path:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(OWNER_KEY, "correct horse", iterations=2)))
    return path


def test_a_keystore_decrypts_with_the_password_from_the_environment(keystore, monkeypatch):
    monkeypatch.setenv("OPENLEDGER_KEYSTORE_PASSWORD", "correct horse")
    assert load_account(keystore).address == OWNER_ADDRESS


def test_a_keystore_takes_precedence_over_the_key_in_the_environment(keystore, monkeypatch):
    monkeypatch.setenv("OPENLEDGER_KEYSTORE_PASSWORD", "correct horse")
    monkeypatch.setenv("OPENLEDGER_PRIVATE_KEY", DEV_ACCOUNTS[1][1])
    assert load_account(keystore).address == OWNER_ADDRESS


def test_a_wrong_keystore_password_is_named_as_such(keystore, monkeypatch):
    monkeypatch.setenv("OPENLEDGER_KEYSTORE_PASSWORD", "wrong")
    with pytest.raises(WalletError, match="wrong password"):
        load_account(keystore)


def test_a_file_that_is_not_a_keystore_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLEDGER_KEYSTORE_PASSWORD", "x")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.json").write_text('{"version": 3}')
    with pytest.raises(WalletError, match="not a JSON keystore"):
        load_account(tmp_path / "notes.txt")
    with pytest.raises(WalletError, match="not a valid keystore"):
        load_account(tmp_path / "other.json")
    with pytest.raises(WalletError, match="cannot read keystore"):
        load_account(tmp_path / "missing.json")


def test_the_private_key_comes_from_the_environment_without_a_keystore(monkeypatch):
    monkeypatch.setenv("OPENLEDGER_PRIVATE_KEY", DEV_ACCOUNTS[2][1])
    assert load_account(None).address == DEV_ACCOUNTS[2][0]


def test_an_invalid_private_key_is_refused_without_echoing_it(monkeypatch):
    secret = "0x" + "ab" * 31
    monkeypatch.setenv("OPENLEDGER_PRIVATE_KEY", secret)
    with pytest.raises(WalletError) as caught:
        load_account(None)
    assert "not a valid private key" in str(caught.value)
    assert "ab" * 31 not in str(caught.value)


def test_without_a_keystore_or_a_key_a_transaction_command_says_how_to_give_one():
    result = cli("datanet", "publish", "1", "--rpc", closed_port_url())
    assert_one_error_line(result, "no signing key", "--keystore", "OPENLEDGER_PRIVATE_KEY")


def after_prompt(result, prompt: str) -> str:
    """stderr after the password prompt (the prompt is on stderr: stdout may carry --json)."""
    assert result.stderr.startswith(prompt), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stderr[len(prompt):].strip()


def test_the_keystore_password_is_prompted_for_hidden_when_not_in_the_environment(keystore):
    # decrypted before the node is contacted: the error that follows is about the node, not the key
    result = cli("datanet", "publish", "1", "--keystore", keystore, "--rpc", closed_port_url(), input="correct horse\n")
    assert result.exit_code == 1
    assert after_prompt(result, f"password for {keystore}:").startswith("error: cannot reach the node")
    assert "correct horse" not in result.stdout + result.stderr


def test_a_wrong_password_at_the_prompt_is_one_error_line(keystore):
    result = cli("datanet", "publish", "1", "--keystore", keystore, "--rpc", closed_port_url(), input="nope\n")
    assert result.exit_code == 1
    assert after_prompt(result, f"password for {keystore}:") == f"error: cannot decrypt keystore {keystore}: wrong password"


# ----------------------------------------------------------------------------- files


def test_a_folder_gives_its_regular_files_sorted_by_name_at_every_level(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("z")
    (tmp_path / "b" / "a.txt").write_text("a")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "c.txt").write_text("c")
    (tmp_path / "b" / "sub").mkdir()
    (tmp_path / "b" / "sub" / "m.txt").write_text("m")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    (tmp_path / "linked-folder").symlink_to(tmp_path / "b")
    os.mkfifo(tmp_path / "pipe")
    found = [path.relative_to(tmp_path).as_posix() for path in contribution_files(tmp_path)]
    assert found == ["a.txt", "b/a.txt", "b/sub/m.txt", "b/z.txt", "c.txt"]


def test_a_single_file_is_its_own_contribution(tmp_path):
    (tmp_path / "one.txt").write_text("one")
    assert contribution_files(tmp_path / "one.txt") == [tmp_path / "one.txt"]
    with pytest.raises(WalletError, match="cannot read"):
        contribution_files(tmp_path / "missing")


def test_contributions_are_checked_locally_against_the_registry_limits():
    assert check_contribution(b"") == "contribution data is empty"
    assert check_contribution(b"x" * 262_144) is None
    assert check_contribution(b"x" * 262_145) == "contribution data is 262145 bytes, more than 262144"
    assert check_contribution("caf\u00e9 \u2603".encode()) is None
    assert check_contribution(b"ok \xff\xfe") == "contribution data is not UTF-8 (byte 3)"
    assert check_contribution(b"  ...  ") == "contribution data holds no word or character to attribute"


def test_contributing_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "data").mkdir()
    result = cli("datanet", "contribute", "1", tmp_path / "data", "--rpc", closed_port_url())
    assert_one_error_line(result, "no files in")


# ----------------------------------------------------------------------------- decoding


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_a_precompile_custom_error_is_decoded_with_its_argument_names():
    data = selector("StakeTooLow(uint256,uint256)") + encode(["uint256", "uint256"], [1, 10])
    assert decode_revert(data) == "StakeTooLow(sent=1, minStake=10)"


def test_custom_errors_of_both_precompiles_and_all_argument_kinds_are_decoded():
    caller = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
    assert (decode_revert(selector("NotDatanetOwner(uint256,address)") + encode(["uint256", "address"], [3, caller]))
            == "NotDatanetOwner(datanetId=3, caller=0x70997970C51812dc3A010C7d01b50e0d17dc79C8)")
    assert (decode_revert(selector("InvalidContribution(string)") + encode(["string"], ["not_utf8: byte 3"]))
            == 'InvalidContribution(reason="not_utf8: byte 3")')
    assert (decode_revert(selector("UnknownSelector(bytes4)") + encode(["bytes4"], [b"\x12\x34\x56\x78"]))
            == "UnknownSelector(selector=0x12345678)")
    assert (decode_revert(selector("AlreadyReviewed(uint256,uint256,uint8)") + encode(["uint256"] * 2 + ["uint8"], [1, 2, 1]))
            == "AlreadyReviewed(datanetId=1, contributionId=2, status=1)")
    assert decode_revert(selector("NotPayable()")) == "NotPayable()"
    assert (decode_revert(selector("InvalidArgument(string)") + encode(["string"], ["0x12"]))
            == 'InvalidArgument(reason="0x12")')  # a string, even one that looks like hex
    assert decode_revert(selector("NothingToClaim(address)") + encode(["address"], [caller])).startswith(
        "NothingToClaim(account=0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    assert decode_revert(selector("UnknownModel(uint256)") + encode(["uint256"], [9])) == "UnknownModel(modelId=9)"


def test_solidity_error_strings_panics_and_unknown_data_are_decoded_too():
    assert decode_revert(selector("Error(string)") + encode(["string"], ["nope"])) == "execution reverted: nope"
    assert decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x11])) == (
        "execution reverted: arithmetic underflow or overflow")
    assert decode_revert(bytes.fromhex("deadbeef01")) == "execution reverted: 0xdeadbeef01"
    assert decode_revert(b"") == "execution reverted (no revert data)"
    truncated = selector("StakeTooLow(uint256,uint256)") + b"\x00" * 5
    assert decode_revert(truncated).startswith("StakeTooLow with undecodable arguments 0x")


def rpc_log(address: str, signature: str, indexed: list[tuple[str, object]], data: list[tuple[str, object]]) -> dict:
    topics = [keccak(text=signature)] + [encode([kind], [value]) for kind, value in indexed]
    return {"address": address.lower(), "topics": ["0x" + topic.hex() for topic in topics],
            "data": "0x" + encode([kind for kind, _ in data], [value for _, value in data]).hex()}


def test_receipt_logs_of_the_registry_are_decoded_by_topic0():
    log = rpc_log(DATANET_REGISTRY, "DatanetCreated(uint256,address,string,uint256)",
                  [("uint256", 7), ("address", OWNER_ADDRESS)], [("string", "Recipes"), ("uint256", 10**18)])
    event = decode_log(log)
    assert event.name == "DatanetCreated" and event.address == DATANET_REGISTRY
    assert event.args == {"datanetId": 7, "owner": OWNER_ADDRESS, "name": "Recipes", "minStake": 10**18}
    assert str(event) == f'DatanetCreated(datanetId=7, owner={OWNER_ADDRESS}, name="Recipes", minStake={10**18})'


def test_receipt_logs_of_the_attribution_precompile_are_decoded_by_topic0():
    log = rpc_log(PROOF_OF_ATTRIBUTION, "RewardCredited(uint256,address,uint256,uint256,uint256,uint256)",
                  [("uint256", 4), ("address", DEV_ACCOUNTS[1][0]), ("uint256", 2)],
                  [("uint256", 3), ("uint256", 250), ("uint256", 999)])
    event = decode_log(log)
    assert event.as_json() == {"event": "RewardCredited", "address": PROOF_OF_ATTRIBUTION, "args": {
        "inferenceId": 4, "contributor": DEV_ACCOUNTS[1][0], "datanetId": 2, "contributionId": 3,
        "score": 250, "amount": 999}}
    hashes = rpc_log(PROOF_OF_ATTRIBUTION, "ModelRegistered(uint256,address,string,bytes32,uint16)",
                     [("uint256", 1), ("address", OWNER_ADDRESS)], [("string", "m"), ("bytes32", b"\x01" * 32), ("uint16", 500)])
    assert decode_log(hashes).args["adapterHash"] == "0x" + "01" * 32


def test_logs_from_other_contracts_or_with_unknown_topics_are_left_undecoded():
    created = rpc_log(DATANET_REGISTRY, "DatanetCreated(uint256,address,string,uint256)",
                      [("uint256", 7), ("address", OWNER_ADDRESS)], [("string", "x"), ("uint256", 1)])
    assert decode_log({**created, "address": "0x" + "42" * 20}) is None
    assert decode_log({**created, "topics": ["0x" + "00" * 32] + created["topics"][1:]}) is None
    assert decode_log({**created, "topics": []}) is None


# ----------------------------------------------------------------------------- against a node


def test_an_unreachable_node_is_one_error_line():
    url = closed_port_url()
    result = cli("datanet", "show", "1", "--rpc", url)
    assert_one_error_line(result, f"cannot reach the node at {url}")
    result = cli("claim", "--show", OWNER_ADDRESS, "--rpc", "not a url")
    assert_one_error_line(result, "invalid --rpc URL")


def test_the_rpc_url_comes_from_the_environment():
    url = closed_port_url()
    result = cli("datanet", "show", "1", env={"OPENLEDGER_RPC": url})
    assert_one_error_line(result, f"cannot reach the node at {url}")


def test_a_transaction_the_pool_refuses_is_one_error_line_naming_the_method(tmp_path):
    broke = Account.create()
    with running_node(tmp_path / "data") as node:
        result = cli("datanet", "create", "Recipes", "--rpc", node.url, env={"OPENLEDGER_PRIVATE_KEY": broke.key.hex()})
    line = assert_one_error_line(result, "eth_sendRawTransaction", "insufficient funds")
    assert broke.key.hex().removeprefix("0x") not in result.stdout + result.stderr, line


def test_no_receipt_within_the_timeout_is_one_error_line_with_the_hash(tmp_path):
    with running_node(tmp_path / "data", mining=False) as node:
        result = cli("datanet", "create", "Recipes", "--rpc", node.url, "--timeout", "0.3",
                     env={"OPENLEDGER_PRIVATE_KEY": OWNER_KEY})
        line = assert_one_error_line(result, "no receipt for 0x", "in 0.3s")
        waiting = node.rpc("eth_getTransactionByHash", line.split("no receipt for ")[1].split()[0])
    assert waiting["from"] == OWNER_ADDRESS.lower() and waiting["blockNumber"] is None


def test_a_folder_waits_for_its_receipts_once_not_once_per_file(tmp_path):
    folder = write_folder(tmp_path / "notes", {f"{i}.txt": f"note number {i}" for i in range(8)})
    with running_node(tmp_path / "data", dev=True, mining=False) as node:
        create_datanet_and_mine(node)
        started = time.monotonic()
        result = cli("datanet", "contribute", "1", folder, "--stake", "0", "--timeout", "1", "--rpc", node.url,
                     env=key_of(1))
        elapsed = time.monotonic() - started
        pending = node.rpc("txpool_status")["pending"]
    assert result.exit_code == 1 and result.stderr.strip() == "error: 8 of 8 files failed"
    assert all(": failed: no receipt for 0x" in line for line in result.stdout.splitlines()[:8])
    assert int(pending, 16) == 8  # sent all the same, with consecutive nonces
    assert elapsed < 4, elapsed  # one timeout per file would be 8 s


def test_the_installed_command_has_the_wallet_commands(tmp_path):
    with running_node(tmp_path / "data") as node:
        done = run_cli("datanet", "show", "1", "--rpc", node.url)
    assert done.returncode == 1 and done.stderr == "error: UnknownDatanet(datanetId=1)\n"
    assert "datanet" in run_cli("--help").stdout


def test_an_address_to_show_must_be_an_address():
    result = cli("claim", "--show", "0x1234", "--rpc", closed_port_url())
    assert_one_error_line(result, "--show '0x1234' is not an address")


def test_attribute_needs_exactly_one_output(tmp_path):
    assert_one_error_line(cli("attribute", "1", "--rpc", closed_port_url()), "exactly one of --output")
    (tmp_path / "out.txt").write_text("x")
    assert_one_error_line(cli("attribute", "1", "--output", "x", "--output-file", tmp_path / "out.txt"),
                          "exactly one of --output")


def test_model_register_checks_its_options_before_signing(tmp_path):
    url = closed_port_url()
    assert_one_error_line(cli("model", "register", "m", "--datanet", "1-2", "--rpc", url), "expected ID:VERSION")
    assert_one_error_line(cli("model", "register", "m", "--datanet", "1:2", "--adapter-hash", "0x12", "--rpc", url),
                          "expected 0x and 64 hex digits")
    (tmp_path / "adapter.bin").write_bytes(b"w")
    assert_one_error_line(cli("model", "register", "m", "--datanet", "1:2", "--adapter-hash", "0x" + "00" * 32,
                              "--adapter-file", tmp_path / "adapter.bin", "--rpc", url), "not both")


def test_an_adapter_file_is_hashed_with_keccak256_in_pieces(tmp_path):
    weights = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "adapter.bin").write_bytes(weights)
    assert wallet_cli._file_keccak(tmp_path / "adapter.bin") == keccak(weights)


# ----------------------------------------------------------------------------- end to end, with the precompiles

RECIPES = {
    "a.txt": "To make a sourdough starter mix equal weights of rye flour and water, then feed it every day for a week.",
    "b.txt": "Tomatoes ripen faster in a paper bag next to a banana, because bananas release ethylene gas as they age.",
    "sub/c.txt": "Braise the short ribs for three hours at a low oven temperature until the meat falls from the bone.",
}
GWEI = 10**9
OPEN = 10**18


def as_json(node, *args: str, signer: int = 0) -> dict:
    """Run a wallet command with --json against ``node``; it must succeed."""
    result = cli(*args, "--json", "--rpc", node.url, env=key_of(signer))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def event_names(document: dict) -> list[str]:
    return [event["event"] for event in document["events"]]


def registry_call(node, function: str, *args) -> dict:
    """A view of the registry through eth_call directly (not through the CLI under test)."""
    return wallet_cli.view(wallet_cli.Rpc(node.url), wallet_cli.registry(), function, *args)


def published_datanet(node, tmp_path: Path) -> None:
    """Datanet 1 (owner dev 0, min stake 1 gwei) with RECIPES from dev 1: 1 and 3 accepted, 2 rejected, version 1."""
    as_json(node, "datanet", "create", "Recipes", "--min-stake", "1gwei")
    result = cli("datanet", "contribute", "1", write_folder(tmp_path / "recipes", RECIPES), "--rpc", node.url, env=key_of(1))
    assert result.exit_code == 0, result.stderr
    for contribution, verdict in (("1", "--accept"), ("2", "--reject"), ("3", "--accept")):
        as_json(node, "datanet", "review", "1", contribution, verdict)
    as_json(node, "datanet", "publish", "1")


@pytest.fixture
def node(tmp_path):
    with running_node(tmp_path / "data") as running:
        yield running


def test_create_prints_the_new_datanet_id_and_its_event(node, keystore, monkeypatch):
    monkeypatch.setenv("OPENLEDGER_KEYSTORE_PASSWORD", "correct horse")
    result = cli("datanet", "create", "Recipes", "--description", "kitchen notes", "--min-stake", "1.5gwei",
                 "--keystore", keystore, "--rpc", node.url)
    assert result.exit_code == 0, result.stderr
    assert f'  DatanetCreated(datanetId=1, owner={OWNER_ADDRESS}, name="Recipes", minStake=1500000000)' in result.stdout
    assert result.stdout.strip().endswith("datanet id: 1")
    second = as_json(node, "datanet", "create", "Poems", signer=2)
    assert second["datanetId"] == 2 and second["events"][0]["args"]["owner"] == DEV_ACCOUNTS[2][0]
    receipt = node.rpc("eth_getTransactionReceipt", second["tx"])
    assert int(receipt["blockNumber"], 16) == second["block"] and receipt["status"] == "0x1"
    assert registry_call(node, "getDatanet", 1)["description"] == "kitchen notes"


def test_contributing_a_folder_sends_each_file_in_name_order_and_reports_the_ones_that_failed(node, tmp_path):
    as_json(node, "datanet", "create", "Recipes", "--min-stake", "1gwei")
    folder = write_folder(tmp_path / "recipes", {
        **RECIPES, "binary.bin": b"\xff\xfe\x00 not text", "dup.txt": RECIPES["a.txt"], "empty.txt": b"",
    })
    result = cli("datanet", "contribute", "1", folder, "--rpc", node.url, env=key_of(1))
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: 3 of 6 files failed"
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if not line.startswith("  ")][:6] == [
        "a.txt", "b.txt", "binary.bin", "dup.txt", "empty.txt", "sub/c.txt"]
    assert lines[0].startswith("a.txt: contribution 1 (transaction 0x")
    assert "binary.bin: skipped: contribution data is not UTF-8 (byte 0)" in lines
    assert "empty.txt: skipped: contribution data is empty" in lines
    # the duplicate fails in the estimate, or on chain if it was sent before the original was sealed
    assert any(line.startswith("dup.txt: failed: DuplicateContribution(datanetId=1, existingContributionId=1)")
               for line in lines)
    assert any(line.startswith("sub/c.txt: contribution 3 ") for line in lines)
    submitted = [line.strip() for line in lines if line.startswith("  ContributionSubmitted")]
    assert submitted[1].startswith(f"ContributionSubmitted(datanetId=1, contributionId=2, contributor={DEV_ACCOUNTS[1][0]}, dataHash=0x")
    assert all(line.endswith(f"size={len(RECIPES['b.txt'])}, stake={GWEI})") for line in submitted[1:2])
    assert lines[-1] == f"3 of 6 files contributed, stake {GWEI} wei each"
    for number, name in ((1, "a.txt"), (2, "b.txt"), (3, "sub/c.txt")):
        stored = registry_call(node, "getContribution", 1, number)
        assert stored["dataHash"] == "0x" + keccak(RECIPES[name].encode()).hex()
        assert stored["contributor"] == DEV_ACCOUNTS[1][0] and stored["stake"] == GWEI and stored["status"] == 0
    assert registry_call(node, "getDatanet", 1)["contributionCount"] == 3


def test_contribute_json_lists_every_file_with_its_id_or_error(node, tmp_path):
    as_json(node, "datanet", "create", "Recipes")
    folder = write_folder(tmp_path / "recipes", {"a.txt": RECIPES["a.txt"], "z.txt": b"\xc3"})
    result = cli("datanet", "contribute", "1", folder, "--stake", "2gwei", "--json", "--rpc", node.url, env=key_of(1))
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["stake"] == 2 * GWEI and document["contributed"] == 1 and document["failed"] == 1
    assert document["files"][0]["contributionId"] == 1
    assert event_names(document["files"][0]) == ["ContributionSubmitted"]
    assert document["files"][1] == {"path": "z.txt", "error": "contribution data is not UTF-8 (byte 0)", "skipped": True}


def test_a_stake_below_the_minimum_is_refused_with_the_decoded_custom_error(node, tmp_path):
    as_json(node, "datanet", "create", "Recipes", "--min-stake", "10wei")
    (tmp_path / "a.txt").write_text(RECIPES["a.txt"])
    result = cli("datanet", "contribute", "1", tmp_path / "a.txt", "--stake", "1", "--rpc", node.url, env=key_of(1))
    assert assert_one_error_line(result) == "error: StakeTooLow(sent=1, minStake=10)"
    assert registry_call(node, "getDatanet", 1)["contributionCount"] == 0


def test_review_and_publish_print_their_events_and_the_new_version(node, tmp_path):
    as_json(node, "datanet", "create", "Recipes", "--min-stake", "1gwei")
    cli("datanet", "contribute", "1", write_folder(tmp_path / "recipes", RECIPES), "--rpc", node.url, env=key_of(1))
    accepted = as_json(node, "datanet", "review", "1", "1", "--accept")
    assert accepted["events"][0] == {"event": "ContributionReviewed", "address": DATANET_REGISTRY,
                                     "args": {"datanetId": 1, "contributionId": 1, "accepted": True, "slashed": 0}}
    rejected = cli("datanet", "review", "1", "2", "--reject", "--rpc", node.url, env=key_of(0))
    assert "  ContributionReviewed(datanetId=1, contributionId=2, accepted=false, slashed=1000000000)" in rejected.stdout
    as_json(node, "datanet", "review", "1", "3", "--accept")
    published = cli("datanet", "publish", "1", "--rpc", node.url, env=key_of(0))
    assert published.exit_code == 0, published.stderr
    lines = published.stdout.splitlines()
    assert [line.split("(")[0].strip() for line in lines[1:-1]] == ["StakeRefunded", "StakeRefunded", "VersionPublished"]
    assert lines[1] == f"  StakeRefunded(datanetId=1, contributionId=1, contributor={DEV_ACCOUNTS[1][0]}, amount={GWEI})"
    assert lines[3].startswith("  VersionPublished(datanetId=1, version=1, contributionCount=2, root=0x")
    assert lines[-1] == "version: 1"
    assert registry_call(node, "getVersion", 1, 1)["contributionCount"] == 2


def test_review_and_publish_are_for_the_owner_and_say_why_not(node, tmp_path):
    as_json(node, "datanet", "create", "Recipes")
    (tmp_path / "a.txt").write_text(RECIPES["a.txt"])
    as_json(node, "datanet", "contribute", "1", str(tmp_path / "a.txt"), signer=1)
    result = cli("datanet", "review", "1", "1", "--accept", "--rpc", node.url, env=key_of(1))
    assert assert_one_error_line(result) == f"error: NotDatanetOwner(datanetId=1, caller={DEV_ACCOUNTS[1][0]})"
    result = cli("datanet", "publish", "1", "--rpc", node.url, env=key_of(0))
    assert assert_one_error_line(result) == "error: NothingToPublish(datanetId=1)"
    as_json(node, "datanet", "review", "1", "1", "--reject")
    result = cli("datanet", "review", "1", "1", "--accept", "--rpc", node.url, env=key_of(0))
    assert assert_one_error_line(result) == "error: AlreadyReviewed(datanetId=1, contributionId=1, status=2)"
    result = cli("datanet", "review", "1", "7", "--accept", "--rpc", node.url, env=key_of(0))
    assert assert_one_error_line(result) == "error: UnknownContribution(datanetId=1, contributionId=7)"


def test_an_invalid_argument_of_the_precompile_is_shown_with_its_reason(node):
    result = cli("datanet", "create", "x" * 65, "--rpc", node.url, env=key_of(0))
    assert assert_one_error_line(result).startswith('error: InvalidArgument(reason="name must be 1 to 64 bytes')


def test_show_reads_the_datanet_its_versions_and_contributions_without_a_key(node, tmp_path):
    published_datanet(node, tmp_path)
    result = cli("datanet", "show", "1", "--contributions", "--rpc", node.url)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "datanet 1: \"Recipes\"" in text and f"owner          {OWNER_ADDRESS}" in text
    assert f"min stake      {GWEI} wei (0.000000001 OPEN)" in text
    assert "contributions  3 (2 accepted)" in text and "versions       1" in text
    assert "version 1: 2 contributions," in text
    assert f"contribution 1: Accepted, in version 1, from {DEV_ACCOUNTS[1][0]}, {len(RECIPES['a.txt'])} bytes" in text
    assert "contribution 2: Rejected, in no version yet," in text
    document = as_json(node, "datanet", "show", "1", "--contributions")
    assert [c["status"] for c in document["contributions"]] == [1, 2, 1]
    assert [c["version"] for c in document["contributions"]] == [1, 0, 1]
    assert document["versions"][0]["root"] == "0x" + registry_call(node, "getVersion", 1, 1)["root"][2:]
    assert document["acceptedCount"] == 2 and document["owner"] == OWNER_ADDRESS
    result = cli("datanet", "show", "9", "--rpc", node.url)
    assert assert_one_error_line(result) == "error: UnknownDatanet(datanetId=9)"


def test_a_model_is_registered_attributed_to_and_its_rewards_claimed(node, tmp_path):
    published_datanet(node, tmp_path)
    model_owner, payer, contributor = DEV_ACCOUNTS[4][0], DEV_ACCOUNTS[3][0], DEV_ACCOUNTS[1][0]
    (tmp_path / "adapter.safetensors").write_bytes(b"lora weights" * 1000)
    registered = as_json(node, "model", "register", "chef", "--datanet", "1:1", "--adapter-file",
                         str(tmp_path / "adapter.safetensors"), "--owner-share-bps", "1000", signer=4)
    assert registered["modelId"] == 1
    assert registered["events"][0]["args"] == {"modelId": 1, "owner": model_owner, "name": "chef",
                                               "adapterHash": "0x" + keccak(b"lora weights" * 1000).hex(),
                                               "ownerShareBps": 1000}
    output = "Sure: " + RECIPES["a.txt"].lower() + " Enjoy your bread."
    preview = cli("attribute", "1", "--output", output, "--preview", "--rpc", node.url)
    assert preview.exit_code == 0, preview.stderr
    assert preview.stdout.startswith(f"datanet 1 contribution 1 from {contributor}: score ")
    assert preview.stdout.strip().endswith("(100.00%)")
    credits = as_json(node, "attribute", "1", "--output", output, "--preview")["credits"]
    assert [(c["datanetId"], c["contributionId"], c["contributor"]) for c in credits] == [(1, 1, contributor)]

    result = cli("attribute", "1", "--output", output, "--fee", "1open", "--rpc", node.url, env=key_of(3))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith(f"  InferenceAttributed(inferenceId=1, modelId=1, caller={payer}, fee={OPEN}, outputHash=0x")
    assert lines[1].endswith(f"ownerPart={OPEN // 10}, contributorsPart={OPEN - OPEN // 10}, treasuryPart=0)")
    assert lines[2].startswith(f"  RewardCredited(inferenceId=1, contributor={contributor}, datanetId=1, contributionId=1, score=")
    assert lines[2].endswith(f"amount={OPEN - OPEN // 10})")
    assert f"score={credits[0]['score']}," in lines[2]  # the preview foretold the credit
    assert lines[-1] == "inference id: 1"

    shown = as_json(node, "claim", "--show", contributor)
    assert shown == {"account": contributor, "claimable": OPEN - OPEN // 10}
    before = int(node.rpc("eth_getBalance", contributor, "latest"), 16)
    claimed = as_json(node, "claim", signer=1)
    assert claimed["amount"] == OPEN - OPEN // 10
    assert claimed["events"] == [{"event": "Claimed", "address": PROOF_OF_ATTRIBUTION,
                                  "args": {"account": contributor, "amount": OPEN - OPEN // 10}}]
    receipt = node.rpc("eth_getTransactionReceipt", claimed["tx"])
    gas_cost = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    assert int(node.rpc("eth_getBalance", contributor, "latest"), 16) == before + claimed["amount"] - gas_cost
    again = cli("claim", "--rpc", node.url, env=key_of(1))
    assert assert_one_error_line(again) == f"error: NothingToClaim(account={contributor})"
    owner_share = cli("claim", "--show", model_owner, "--rpc", node.url)
    assert owner_share.stdout.strip() == f"{model_owner} can claim {OPEN // 10} wei (0.1 OPEN)"


def test_an_output_with_nothing_attributed_says_so_in_the_preview(node, tmp_path):
    published_datanet(node, tmp_path)
    as_json(node, "model", "register", "chef", "--datanet", "1:1", "--adapter-hash", "0x" + "ab" * 32)
    (tmp_path / "out.txt").write_text("Completely unrelated words about sailing boats and the wind.")
    preview = cli("attribute", "1", "--output-file", tmp_path / "out.txt", "--preview", "--rpc", node.url)
    assert preview.stdout.strip() == "nothing attributed: the contributors' part would go to the treasury"
    result = cli("attribute", "2", "--output", "x", "--rpc", node.url, env=key_of(0))
    assert assert_one_error_line(result) == "error: UnknownModel(modelId=2)"
    result = cli("model", "register", "m", "--datanet", "1:5", "--rpc", node.url, env=key_of(0))
    assert assert_one_error_line(result) == "error: UnknownVersion(datanetId=1, version=5)"


def test_a_transaction_that_reverts_on_chain_is_decoded_from_its_trace(tmp_path):
    # mining off: both duplicates pass the estimate, then one block holds both and the second reverts
    with running_node(tmp_path / "data", dev=True, mining=False) as node:
        create_datanet_and_mine(node)
        wallet = wallet_cli.Wallet(wallet_cli.Rpc(node.url), Account.from_key(DEV_ACCOUNTS[1][1]), receipt_timeout=10)
        first = wallet.send(wallet_cli.registry(), "contribute", 1, RECIPES["a.txt"].encode())
        second = wallet.send(wallet_cli.registry(), "contribute", 1, RECIPES["a.txt"].encode())
        node.rpc("evm_mine")
        assert [event.name for event in wallet.wait(first).events] == ["ContributionSubmitted"]
        with pytest.raises(wallet_cli.Reverted) as caught:
            wallet.wait(second)
    assert str(caught.value) == (f"DuplicateContribution(datanetId=1, existingContributionId=1) "
                                 f"(transaction {second} reverted in block 2)")



def test_a_chain_without_the_precompiles_is_named_as_the_likely_cause(tmp_path):
    with running_anvil(tmp_path / "anvil") as anvil:  # a real chain, with nothing at 0x…0A01
        shown = cli("datanet", "show", "1", "--rpc", anvil.url)
        created = cli("datanet", "create", "Recipes", "--rpc", anvil.url, env=key_of(0))
    assert_one_error_line(shown, "getDatanet:", "answered '0x'", "have the precompile at 0x0000000000000000000000000000000000000a01")
    assert_one_error_line(created, "succeeded but emitted no DatanetCreated event", "have the precompile")
