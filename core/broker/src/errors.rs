//! Freshet's errors as Kafka's error codes (the codes themselves are `freshet_coord::code`).

use freshet_coord::code;
use freshet_coord::transactions::{Refusal, TxnError};
use freshet_log::Error;

/// The error code a log error maps to.
pub(crate) fn error_code(error: &Error) -> i16 {
    match error {
        Error::UnknownTopic(_) | Error::UnknownPartition { .. } => code::UNKNOWN_TOPIC_OR_PARTITION,
        Error::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        Error::InvalidRecords { .. } => code::INVALID_RECORD,
        Error::InvalidBatch(_) | Error::Corrupt { .. } | Error::Decode(_) => code::CORRUPT_MESSAGE,
        Error::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        Error::TopicExists(_) => code::TOPIC_ALREADY_EXISTS,
        Error::InvalidTopicName { .. } => code::INVALID_TOPIC_EXCEPTION,
        Error::InvalidConfig { .. } => code::INVALID_CONFIG,
        Error::ProducerFenced(_) | Error::InvalidProducerEpoch(_) => code::INVALID_PRODUCER_EPOCH,
        Error::OutOfOrderSequence(_) => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        Error::DuplicateSequence(_) => code::DUPLICATE_SEQUENCE_NUMBER,
        Error::Transaction(_) => code::INVALID_TXN_STATE,
        Error::NotReplicated { .. } | Error::Timeout(_) => code::REQUEST_TIMED_OUT,
        Error::NotLeader { .. } => code::NOT_LEADER_OR_FOLLOWER,
        Error::StorageFailed(_) => code::KAFKA_STORAGE_ERROR,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

/// The error code of a group coordinator's write (offsets, a group's deletion) that its log
/// refused, as Kafka's group coordinator answers: a write that missed the in-sync replicas in time
/// is COORDINATOR_NOT_AVAILABLE and one whose partition is no longer led here NOT_COORDINATOR,
/// which clients answer by finding the coordinator again and retrying. NOT_LEADER_OR_FOLLOWER or
/// REQUEST_TIMED_OUT would be fatal to a consumer's commit.
pub(crate) fn coordinator_write_code(error: &Error) -> i16 {
    match error {
        Error::NotReplicated { .. } | Error::Timeout(_) | Error::UnknownTopic(_) | Error::UnknownPartition { .. } => {
            code::COORDINATOR_NOT_AVAILABLE
        }
        Error::NotLeader { .. } | Error::StorageFailed(_) => code::NOT_COORDINATOR,
        Error::BatchTooLarge { .. } => code::UNKNOWN_SERVER_ERROR,
        e => error_code(e),
    }
}

/// The Kafka error code of a refused transaction operation. Newer clients know PRODUCER_FENCED;
/// older ones expect INVALID_PRODUCER_EPOCH.
pub(crate) fn txn_error_code(e: &TxnError, fenced_known: bool) -> i16 {
    match e.refusal {
        Refusal::Fenced if fenced_known => code::PRODUCER_FENCED,
        Refusal::Fenced => code::INVALID_PRODUCER_EPOCH,
        Refusal::UnknownProducer => code::INVALID_PRODUCER_ID_MAPPING,
        Refusal::InvalidState => code::INVALID_TXN_STATE,
        Refusal::Concurrent => code::CONCURRENT_TRANSACTIONS,
        Refusal::InvalidTimeout => code::INVALID_TRANSACTION_TIMEOUT,
        Refusal::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        Refusal::Storage => code::UNKNOWN_SERVER_ERROR,
        Refusal::NotCoordinator => code::NOT_COORDINATOR,
        Refusal::Unavailable => code::COORDINATOR_NOT_AVAILABLE,
        Refusal::MarkersPending => code::CONCURRENT_TRANSACTIONS,
    }
}

/// The Kafka error code of a transaction operation's result.
pub(crate) fn txn_result_code(result: std::result::Result<(), TxnError>, fenced_known: bool) -> i16 {
    match result {
        Ok(()) => code::NONE,
        Err(e) => {
            tracing::info!(error = %e, "transaction request refused");
            txn_error_code(&e, fenced_known)
        }
    }
}
