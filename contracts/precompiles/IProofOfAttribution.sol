// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ProofOfAttribution, the precompile at 0x0000000000000000000000000000000000000A02
/// @notice Models declare the Datanet versions they were trained on; every paid inference is
/// attributed to the contributions its output drew on (attribution v1, docs/attribution.md) and
/// its fee is split: ownerShareBps to the model's owner, the rest to the credited contributions'
/// contributors in proportion to their scores, or to the treasury named in genesis when nothing is
/// attributed. Integer arithmetic only: the parts sum to the fee exactly. Amounts are credited to
/// `claimable` and paid out by `claim`.
/// @dev Implemented by the node (openledger_node/precompiles/attribution.py); same call rules as
/// IDatanetRegistry. Limits: name 1..64 bytes, 1..16 distinct Datanets per model, output at most
/// 65536 bytes.
interface IProofOfAttribution {
    event ModelRegistered(
        uint256 indexed modelId, address indexed owner, string name, bytes32 adapterHash, uint16 ownerShareBps
    );
    event InferenceAttributed(
        uint256 indexed inferenceId,
        uint256 indexed modelId,
        address indexed caller,
        uint256 fee,
        bytes32 outputHash,
        uint256 ownerPart,
        uint256 contributorsPart,
        uint256 treasuryPart
    );
    /// One per credited contribution (positive score), in (datanetId, contributionId) order.
    event RewardCredited(
        uint256 indexed inferenceId,
        address indexed contributor,
        uint256 indexed datanetId,
        uint256 contributionId,
        uint256 score,
        uint256 amount
    );
    event Claimed(address indexed account, uint256 amount);

    error UnknownSelector(bytes4 selector);
    error NotPayable();
    error WriteInStaticCall();
    error DelegateCallNotAllowed();
    error InvalidArgument(string reason);
    error UnknownModel(uint256 modelId);
    error UnknownInference(uint256 inferenceId);
    error UnknownVersion(uint256 datanetId, uint256 version);
    error InvalidOutput(string reason);
    error NothingToClaim(address account);

    function registerModel(
        string calldata name,
        uint256[] calldata datanetIds,
        uint256[] calldata versions,
        bytes32 adapterHash,
        uint16 ownerShareBps
    ) external returns (uint256 modelId);

    function attribute(uint256 modelId, bytes calldata output) external payable returns (uint256 inferenceId);

    function previewAttribution(uint256 modelId, bytes calldata output)
        external
        view
        returns (
            uint256[] memory datanetIds,
            uint256[] memory contributionIds,
            address[] memory contributors,
            uint256[] memory scores
        );

    function claimable(address account) external view returns (uint256);

    function claim() external returns (uint256);

    function modelCount() external view returns (uint256);

    function getModel(uint256 modelId)
        external
        view
        returns (
            address owner,
            string memory name,
            bytes32 adapterHash,
            uint16 ownerShareBps,
            uint256[] memory datanetIds,
            uint256[] memory versions,
            uint256 inferenceCount,
            uint256 registeredAtBlock
        );

    function inferenceCount() external view returns (uint256);

    function getInference(uint256 inferenceId)
        external
        view
        returns (
            uint256 modelId,
            address caller,
            uint256 fee,
            bytes32 outputHash,
            uint256 ownerPart,
            uint256 contributorsPart,
            uint256 treasuryPart,
            uint256 blockNumber
        );
}
