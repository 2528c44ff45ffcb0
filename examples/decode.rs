//! Decode-only time of an input file, the floor for issue 4's goal P2 (a .gz job within 1.3x of
//! decoding it). Reads FILE through the same decoder the reader uses (async-compression's
//! `GzipDecoder` with `multiple_members`, flate2 on zlib-rs via the crate's feature unification,
//! over a 1 MiB tokio `BufReader`) and throws the bytes away.
//!
//! `cargo run --release --example decode -- FILE.csv.gz`
//! prints `file=… compressed_bytes=… bytes=… seconds=… mb_per_s=…` on one line (MB = 10^6 bytes of
//! decoded output). `.zst` goes through `ZstdDecoder`; any other file is read as is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

async fn decode(path: &PathBuf) -> std::io::Result<u64> {
    let file = tokio::fs::File::open(path).await?;
    let buffered = BufReader::with_capacity(1 << 20, file);
    let name = path.to_string_lossy().to_ascii_lowercase();
    let mut src: std::pin::Pin<Box<dyn AsyncRead + Send>> =
        if name.ends_with(".gz") || name.ends_with(".gzip") {
            let mut d = GzipDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            let mut d = ZstdDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        } else {
            Box::pin(buffered)
        };
    // One reused 1 MiB buffer, filled without zeroing: the output goes nowhere.
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = src.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file] = args.as_slice() else {
        eprintln!("usage: decode FILE   (.gz or .zst decoded; other files read as is)");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(file);
    let compressed = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!("decode: {file}: {e}");
            return ExitCode::from(2);
        }
    };
    // The reader runs on actix's current-thread runtime; decode on the same kind.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("decode: cannot start tokio: {e}");
            return ExitCode::from(1);
        }
    };
    let t0 = Instant::now();
    match rt.block_on(decode(&path)) {
        Ok(bytes) => {
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "file={file} compressed_bytes={compressed} bytes={bytes} seconds={secs:.3} mb_per_s={:.1}",
                bytes as f64 / 1e6 / secs
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("decode: {file}: {e}");
            ExitCode::from(1)
        }
    }
}
