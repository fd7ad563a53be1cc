// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title BatchInbox: the L1 record of an OpenLedger L2's batches.
/// @notice Each batch carries, in the calldata of `appendBatch`, the L2 blocks
/// `firstBlock..lastBlock` in the format of docs/batches.md, and commits to the state
/// they lead to. The contract hashes the data itself, so the recorded `dataHash` is
/// the hash of bytes that every L1 node holds; auditors find them through the
/// `BatchAppended` event's transaction. Batch indexes and block ranges are contiguous:
/// batch 0 starts at L2 block 1 (block 0 is the genesis, which auditors already have).
///
/// A batch too big for one L1 transaction travels in frames: `appendFrame` calls carry
/// its first parts, the closing `appendBatch` the last. The recorded `dataHash` is then
/// a hash chain over the parts (see `appendBatch`); `discardFrames` drops the frames of
/// a batch that was never closed (a poster that restarted and could not continue it).
contract BatchInbox {
    /// @notice Version of the output root preimage (see `outputRootOf`).
    uint256 public constant OUTPUT_VERSION = 0;

    struct Batch {
        uint64 firstBlock;
        uint64 lastBlock;
        uint64 l1Block; // L1 block that included the batch
        bytes32 outputRoot; // keccak256(abi.encode(OUTPUT_VERSION, stateRoot, blockHash)) of lastBlock
        bytes32 dataHash; // keccak256 of the batch data (docs/batches.md)
    }

    /// @notice The only account allowed to append.
    address public immutable batcher;
    /// @notice Hash of the L2 genesis block the batches build on.
    bytes32 public immutable l2Genesis;

    Batch[] private _batches;
    /// @notice The L2 block the next batch must start with.
    uint64 public nextBlock = 1;
    /// @notice Frames appended so far to the batch being built (index `batchCount()`).
    uint64 public pendingFrames;
    bytes32 private _framesHash;

    event BatchAppended(
        uint256 indexed index,
        uint64 firstBlock,
        uint64 lastBlock,
        bytes32 stateRoot,
        bytes32 blockHash,
        bytes32 outputRoot,
        bytes32 dataHash,
        uint256 frames
    );
    event FrameAppended(uint256 indexed index, uint256 frame, bytes32 frameHash);
    event FramesDiscarded(uint256 indexed index, uint256 frames);

    error NotBatcher(address sender);
    error NotFromOrigin();
    error UnexpectedIndex(uint256 expected, uint256 given);
    error UnexpectedFirstBlock(uint64 expected, uint64 given);
    error EmptyRange(uint64 firstBlock, uint64 lastBlock);
    error EmptyData();
    error NoSuchBatch(uint256 index);
    error UnexpectedFrame(uint256 expected, uint256 given);

    constructor(address batcher_, bytes32 l2Genesis_) {
        batcher = batcher_;
        l2Genesis = l2Genesis_;
    }

    /// @notice Append batch `index` holding L2 blocks `firstBlock..lastBlock`, after which
    /// the L2 state root is `stateRoot` and the last block's hash `blockHash`.
    /// @dev `index` is the caller's expectation: a batch sent twice (a retry whose first
    /// attempt was included after all) reverts instead of being recorded twice.
    /// `data` is the whole batch, or its last part after `pendingFrames` frames; then
    /// `dataHash` is h(n) for the n parts p(0)..p(n-1), h(0) = 0 and
    /// h(i+1) = keccak256(abi.encode(h(i), keccak256(p(i)))).
    function appendBatch(
        uint256 index,
        uint64 firstBlock,
        uint64 lastBlock,
        bytes32 stateRoot,
        bytes32 blockHash,
        bytes calldata data
    ) external {
        _checkAppend(index);
        if (data.length == 0) revert EmptyData();
        if (firstBlock != nextBlock) revert UnexpectedFirstBlock(nextBlock, firstBlock);
        if (lastBlock < firstBlock) revert EmptyRange(firstBlock, lastBlock);
        uint256 frames = uint256(pendingFrames) + 1;
        bytes32 dataHash = frames == 1 ? keccak256(data) : keccak256(abi.encode(_framesHash, keccak256(data)));
        bytes32 outputRoot = outputRootOf(stateRoot, blockHash);
        _batches.push(Batch(firstBlock, lastBlock, uint64(block.number), outputRoot, dataHash));
        nextBlock = lastBlock + 1;
        pendingFrames = 0;
        _framesHash = bytes32(0);
        emit BatchAppended(index, firstBlock, lastBlock, stateRoot, blockHash, outputRoot, dataHash, frames);
    }

    /// @notice Append part `frame` (0, 1, ...) of batch `index`, which `appendBatch` closes.
    function appendFrame(uint256 index, uint256 frame, bytes calldata data) external {
        _checkAppend(index);
        if (data.length == 0) revert EmptyData();
        if (frame != pendingFrames) revert UnexpectedFrame(pendingFrames, frame);
        bytes32 frameHash = keccak256(data);
        _framesHash = keccak256(abi.encode(_framesHash, frameHash));
        pendingFrames += 1;
        emit FrameAppended(index, frame, frameHash);
    }

    /// @notice Drop the frames of batch `index` appended so far.
    function discardFrames(uint256 index) external {
        _checkAppend(index);
        emit FramesDiscarded(index, pendingFrames);
        pendingFrames = 0;
        _framesHash = bytes32(0);
    }

    function _checkAppend(uint256 index) private view {
        if (msg.sender != batcher) revert NotBatcher(msg.sender);
        // The data must be the calldata of the L1 transaction itself, where auditors read it.
        if (msg.sender != tx.origin) revert NotFromOrigin();
        if (index != _batches.length) revert UnexpectedIndex(_batches.length, index);
    }

    /// @notice Number of batches recorded.
    function batchCount() external view returns (uint256) {
        return _batches.length;
    }

    /// @notice Batch `index` as recorded.
    function batch(uint256 index) external view returns (Batch memory) {
        if (index >= _batches.length) revert NoSuchBatch(index);
        return _batches[index];
    }

    /// @notice The output root committed for an L2 block with this state root and hash.
    function outputRootOf(bytes32 stateRoot, bytes32 blockHash) public pure returns (bytes32) {
        return keccak256(abi.encode(OUTPUT_VERSION, stateRoot, blockHash));
    }
}
