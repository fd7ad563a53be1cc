// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Test contract for the eth_* RPC tests: storage, events, every kind of revert,
/// and calls whose gas needs are not simply "gas used" (63/64 rule, refunds).
contract RpcProbe {
    uint256 public value; // slot 0
    mapping(uint256 => uint256) public cells; // slot 1

    event ValueSet(address indexed by, uint256 value);
    event Ping(uint256 n);

    error Unauthorized(address caller, uint256 code);

    constructor(uint256 initial) payable {
        value = initial;
    }

    function set(uint256 v) external {
        value = v;
        emit ValueSet(msg.sender, v);
        emit Ping(v);
    }

    function failWithReason() external pure {
        require(false, "probe: not allowed");
    }

    function failCustom(uint256 code) external view {
        revert Unauthorized(msg.sender, code);
    }

    function failPanic() external pure {
        assert(false);
    }

    function failBare() external pure {
        revert();
    }

    /// The block and transaction context the call runs in.
    function env()
        external
        view
        returns (uint256 number, uint256 timestamp, uint256 chainId, address coinbase, uint256 baseFee, uint256 gasPrice)
    {
        return (block.number, block.timestamp, block.chainid, block.coinbase, block.basefee, tx.gasprice);
    }

    function senderBalance() external view returns (uint256) {
        return msg.sender.balance;
    }

    function fill(uint256 n) external {
        for (uint256 i = 0; i < n; i++) {
            cells[i] = i + 1;
        }
    }

    /// Clears the cells `fill` wrote: most of the gas comes back as a refund, so the
    /// gas limit it needs is well above the gas it finally uses.
    function clear(uint256 n) external {
        for (uint256 i = 0; i < n; i++) {
            delete cells[i];
        }
    }

    /// Does its work in a sub-call, so the 63/64 rule (EIP-150) makes the gas limit it
    /// needs larger than the gas it uses.
    function nested(uint256 n) external {
        this.fill(n);
    }
}
