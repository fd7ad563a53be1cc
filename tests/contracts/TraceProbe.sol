// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Test contracts for debug_trace*: storage, events, reverts and every kind of call frame.

contract TraceCallee {
    uint256 public stored; // slot 0

    event Stored(uint256 value);

    function store(uint256 v) external payable returns (uint256) {
        stored = v;
        emit Stored(v);
        return v * 2;
    }

    /// Not ``pure``: a caller reaches it with CALL, not STATICCALL.
    function fail() external {
        if (stored != type(uint256).max) revert("callee: nope");
        stored = 0;
    }
}

contract TraceChild {
    uint256 public seed;

    constructor(uint256 s) payable {
        seed = s;
    }
}

contract TraceProbe {
    uint256 public counter; // slot 0 (TraceCallee.store writes it under DELEGATECALL)

    event Counted(uint256 indexed by, uint256 total);

    function bump(uint256 by) external returns (uint256) {
        uint256 total = counter + by;
        counter = total;
        emit Counted(by, total);
        return total;
    }

    function bumpThenRevert(uint256 by) external {
        counter += by;
        revert("probe: reverted");
    }

    /// CALL, DELEGATECALL, STATICCALL, a CALL that reverts, then CREATE and CREATE2.
    function nested(TraceCallee callee, uint256 v) external payable returns (address created, address salted) {
        callee.store(v);
        (bool ok, ) = address(callee).delegatecall(abi.encodeCall(TraceCallee.store, (v + 1)));
        require(ok, "delegatecall failed");
        require(callee.stored() == v, "static read");
        try callee.fail() {} catch {}
        created = address(new TraceChild{value: msg.value}(v));
        salted = address(new TraceChild{salt: bytes32(v)}(v + 1));
    }

    function destroy(address payable to) external {
        selfdestruct(to);
    }

    receive() external payable {}
}
