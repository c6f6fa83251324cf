//! `freshet dump-log`: the batches and records of a partition's segment files.

use crate::*;

#[derive(clap::Args)]
pub(crate) struct DumpLogArgs {
    /// The segment file.
    pub(crate) file: PathBuf,
    /// Print every record too (key, value and headers, as text where they are UTF-8).
    #[arg(long)]
    pub(crate) records: bool,
}

pub(crate) fn show(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_owned(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        },
    }
}

pub(crate) fn dump_log(args: &DumpLogArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    say(&format!("Dumping {} ({} bytes)", args.file.display(), bytes.len()));
    let mut position = 0usize;
    let (mut n_batches, mut n_records) = (0u64, 0u64);
    for batch in Batches::new(&bytes) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                say(&format!("position {position}: {e}; stopping"));
                anyhow::bail!("{} is damaged at byte {position}: {e}", args.file.display());
            }
        };
        let crc = match batch.check_crc() {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID ({e})"),
        };
        say(&format!(
            "baseOffset: {} lastOffset: {} count: {} position: {position} size: {} magic: {} compression: {:?} \
             timestampType: {:?} maxTimestamp: {} producerId: {} producerEpoch: {} baseSequence: {} \
             isTransactional: {} isControl: {} partitionLeaderEpoch: {} crc: {crc}",
            batch.base_offset(),
            batch.last_offset(),
            batch.record_count(),
            batch.size(),
            batch.magic(),
            batch.compression()?,
            batch.timestamp_type(),
            batch.max_timestamp(),
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
            batch.is_transactional(),
            batch.is_control(),
            batch.partition_leader_epoch(),
        ));
        if args.records {
            batch.for_each_record(|r| {
                let headers: Vec<String> =
                    r.headers()?.iter().map(|h| format!("{}={}", h.key, show(h.value.as_deref()))).collect();
                say(&format!(
                    "| offset: {} timestamp: {} key: {} value: {} headers: [{}]",
                    r.offset,
                    r.timestamp,
                    show(r.key),
                    show(r.value),
                    headers.join(", ")
                ));
                Ok(())
            })?;
        }
        n_batches += 1;
        n_records += batch.record_count().max(0) as u64;
        position += batch.size();
    }
    if position < bytes.len() {
        say(&format!("{} trailing bytes at position {position} do not hold a whole batch", bytes.len() - position));
    }
    say(&format!("{n_batches} batches, {n_records} records"));
    Ok(())
}
