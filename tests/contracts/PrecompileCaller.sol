// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "../../contracts/precompiles/IDatanetRegistry.sol";

/// Calls the OpenLedger precompiles from a contract: plain, static and delegate calls
/// with raw calldata (tests of the call rules), and a typed call through the interface.
contract PrecompileCaller {
    function callTarget(address target, bytes calldata data) external payable returns (bool ok, bytes memory ret) {
        (ok, ret) = target.call{value: msg.value}(data);
    }

    function staticCallTarget(address target, bytes calldata data) external view returns (bool ok, bytes memory ret) {
        (ok, ret) = target.staticcall(data);
    }

    function delegateCallTarget(address target, bytes calldata data) external returns (bool ok, bytes memory ret) {
        (ok, ret) = target.delegatecall(data);
    }

    /// A DAO-style owner: the contract creates and so owns a Datanet.
    function createDatanet(string calldata name) external returns (uint256 id, uint256 count) {
        IDatanetRegistry registry = IDatanetRegistry(address(0x0A01));
        id = registry.createDatanet(name, "made by a contract", 0);
        count = registry.datanetCount();
    }
}
