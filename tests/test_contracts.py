"""Solidity compilation through npm solc (solcjs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from openledger_node.contracts import CONTRACTS_DIR, SolidityCompileError, compile_contracts, contract_abi


def test_compile_test_token() -> None:
    artifact = compile_contracts([CONTRACTS_DIR / "TestToken.sol"])["TestToken"]
    functions = {e["name"] for e in artifact["abi"] if e["type"] == "function"}
    events = {e["name"] for e in artifact["abi"] if e["type"] == "event"}
    assert {"transfer", "balanceOf", "totalSupply"} <= functions
    assert "Transfer" in events
    constructor = next(e for e in artifact["abi"] if e["type"] == "constructor")
    assert [i["type"] for i in constructor["inputs"]] == ["uint256"]
    assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2
    assert artifact["deployedBytecode"].startswith("0x") and len(artifact["deployedBytecode"]) > 2


def test_repeated_compile_is_cached() -> None:
    first = compile_contracts([CONTRACTS_DIR / "TestToken.sol"])
    start = time.perf_counter()
    assert compile_contracts([CONTRACTS_DIR / "TestToken.sol"]) == first
    assert time.perf_counter() - start < 0.5


def test_contract_abi_helper() -> None:
    assert any(e.get("name") == "Transfer" for e in contract_abi("TestToken"))
    with pytest.raises(KeyError, match="NoSuchContract"):
        contract_abi("NoSuchContract")


def test_syntax_error_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "Broken.sol"
    bad.write_text("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\ncontract Broken { uint x = ; }\n")
    with pytest.raises(SolidityCompileError, match="ParserError") as excinfo:
        compile_contracts([bad])
    assert excinfo.value.messages and "Broken.sol" in excinfo.value.messages[0]


def test_local_imports_and_dependency_changes(tmp_path: Path) -> None:
    lib = tmp_path / "Lib.sol"
    main = tmp_path / "Main.sol"
    lib.write_text("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\nlibrary Lib { uint constant X = 1; }\n")
    main.write_text(
        '// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\nimport {Lib} from "./Lib.sol";\n'
        "contract Main { function x() external pure returns (uint) { return Lib.X; } }\n"
    )
    first = compile_contracts([main])
    assert set(first) == {"Main"}
    lib.write_text("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\nlibrary Lib { uint constant X = 2; }\n")
    assert compile_contracts([main])["Main"]["deployedBytecode"] != first["Main"]["deployedBytecode"]
