//! What the benchmarks share: the machine's own limits, measured in the same run (a 4 KiB write
//! with fdatasync, sequential writes flushed once, memory copy, one loopback TCP connection), a
//! process's CPU time and peak memory, and the Freshet / peer ratio as printed.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Peak resident memory of a process, in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// 4 KiB writes each followed by fdatasync, per second, on the disk `dir` is on.
pub(crate) fn fsyncs_per_sec(dir: &std::path::Path) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![1u8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Sequential write bandwidth (256 MiB, flushed once at the end), bytes per second.
pub(crate) fn disk_bytes_per_sec(dir: &std::path::Path) -> f64 {
    let path = dir.join("bandwidth-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![3u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..256 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_data().unwrap();
    let rate = 256.0 * (1 << 20) as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    rate
}

/// Memory copy bandwidth, bytes per second.
pub(crate) fn memcpy_bytes_per_sec() -> f64 {
    let src = vec![5u8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    let started = Instant::now();
    for _ in 0..16 {
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
    }
    16.0 * src.len() as f64 / started.elapsed().as_secs_f64()
}

/// Bytes per second through one loopback TCP connection.
pub(crate) fn loopback_bytes_per_sec() -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let total: usize = 2 << 30;
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        while n < total {
            n += s.read(&mut buf).unwrap();
        }
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..total / chunk.len() {
        s.write_all(&chunk).unwrap();
    }
    reader.join().unwrap();
    total as f64 / started.elapsed().as_secs_f64()
}

/// Freshet's figure over the peer's, as printed (`-` without the peer's).
pub(crate) fn ratio(freshet: f64, kafka: f64) -> String {
    if kafka > 0.0 {
        format!("{:.2}x", freshet / kafka)
    } else {
        "-".into()
    }
}

/// A process's CPU time (user and system, all its threads), seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    stat_seconds(pid, 11)
}

/// The sum of two adjacent clock-tick fields of `/proc/PID/stat` from `first` (counted after the
/// command name: 11 and 12 are the process's user and system time, 13 and 14 its waited-for
/// children's), seconds.
pub(crate) fn stat_seconds(pid: u32, first: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(first).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(first + 1).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Prints the machine's limits, measured now, on the disk `dir` is on.
pub(crate) fn print_limits(dir: &std::path::Path) {
    println!("limits of this machine, this run:");
    println!("  disk: {:.0} fdatasyncs/s (4 KiB each)", fsyncs_per_sec(dir));
    println!("  disk: {:.0} MB/s sequential writes, flushed", disk_bytes_per_sec(dir) / 1e6);
    println!("  memory copy: {:.1} GB/s", memcpy_bytes_per_sec() / 1e9);
    println!("  loopback TCP, one connection: {:.0} MB/s", loopback_bytes_per_sec() / 1e6);
}
