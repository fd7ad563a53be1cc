// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title DatanetRegistry, the precompile at 0x0000000000000000000000000000000000000A01
/// @notice Community datasets ("Datanets"): anyone creates one; contributors submit UTF-8 text
/// with a stake; the Datanet's owner reviews each contribution and publishes versions, frozen
/// snapshots of the accepted contributions that models declare they were trained on and that
/// the ProofOfAttribution precompile attributes inferences to.
/// @dev Implemented by the node (openledger_node/precompiles/registry.py); this interface is the
/// source of truth: the node refuses to start unless every function, event and error here has an
/// implementation and vice versa. Rules on every call: an unknown selector, value sent to a
/// non-payable function, a state change inside a static call, and a DELEGATECALL or CALLCODE
/// into the precompile all revert. Limits: name 1..64 bytes, description at most 1024 bytes,
/// contribution data 1..262144 bytes of UTF-8 text holding at least one token.
interface IDatanetRegistry {
    // Contribution status.
    // 0 = Pending (submitted, not reviewed), 1 = Accepted, 2 = Rejected.

    event DatanetCreated(uint256 indexed datanetId, address indexed owner, string name, uint256 minStake);
    event ContributionSubmitted(
        uint256 indexed datanetId,
        uint256 indexed contributionId,
        address indexed contributor,
        bytes32 dataHash,
        uint256 size,
        uint256 stake
    );
    /// @param slashed the stake sent to the Datanet's owner (rejected), 0 when accepted
    event ContributionReviewed(
        uint256 indexed datanetId, uint256 indexed contributionId, bool accepted, uint256 slashed
    );
    /// @param root commits to the version's contributions and to every earlier version: starting
    /// from bytes32(0), each contribution accepted, in the order accepted, makes it
    /// keccak256(abi.encodePacked(root, uint256(contributionId), dataHash))
    event VersionPublished(
        uint256 indexed datanetId, uint256 indexed version, uint256 contributionCount, bytes32 root, uint256 tokens
    );
    /// One per accepted contribution first included in a published version.
    event StakeRefunded(
        uint256 indexed datanetId, uint256 indexed contributionId, address indexed contributor, uint256 amount
    );

    error UnknownSelector(bytes4 selector);
    error NotPayable();
    error WriteInStaticCall();
    error DelegateCallNotAllowed();
    error InvalidArgument(string reason);
    error UnknownDatanet(uint256 datanetId);
    error UnknownContribution(uint256 datanetId, uint256 contributionId);
    error UnknownVersion(uint256 datanetId, uint256 version);
    error NotDatanetOwner(uint256 datanetId, address caller);
    error StakeTooLow(uint256 sent, uint256 minStake);
    /// @param reason "empty", "too_large", "not_utf8" or "no_tokens", then ": " and the detail
    error InvalidContribution(string reason);
    error DuplicateContribution(uint256 datanetId, uint256 existingContributionId);
    error AlreadyReviewed(uint256 datanetId, uint256 contributionId, uint8 status);
    error NothingToPublish(uint256 datanetId);

    function createDatanet(string calldata name, string calldata description, uint256 minStake)
        external
        returns (uint256 datanetId);

    function contribute(uint256 datanetId, bytes calldata data) external payable returns (uint256 contributionId);

    function review(uint256 datanetId, uint256 contributionId, bool accept) external;

    function publishVersion(uint256 datanetId) external returns (uint256 version);

    function datanetCount() external view returns (uint256);

    function getDatanet(uint256 datanetId)
        external
        view
        returns (
            address owner,
            string memory name,
            string memory description,
            uint256 minStake,
            uint256 contributionCount,
            uint256 acceptedCount,
            uint256 versionCount,
            uint256 createdAtBlock
        );

    /// @dev status: 0 Pending, 1 Accepted, 2 Rejected; version: the first published version that
    /// includes it (0: none yet).
    function getContribution(uint256 datanetId, uint256 contributionId)
        external
        view
        returns (
            address contributor,
            bytes32 dataHash,
            uint256 size,
            uint256 tokens,
            uint256 stake,
            uint8 status,
            uint256 version,
            uint256 submittedAtBlock
        );

    function getVersion(uint256 datanetId, uint256 version)
        external
        view
        returns (uint256 contributionCount, bytes32 root, uint256 tokens, uint256 publishedAtBlock);

    /// The version's contribution ids, ascending.
    function getVersionContributions(uint256 datanetId, uint256 version) external view returns (uint256[] memory);
}
