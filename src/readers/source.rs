//! Byte sources: a file opened through the right decompressor, cut into blocks that end on a
//! record boundary so that blocks can be parsed independently, on any worker, in any order.
//!
//! A boundary is a line end outside quotes, where quotes are read the way the CSV parser reads
//! them: a `"` opens a quoted field only at the start of a field (after a delimiter or a line
//! end), `""` inside one is an escaped quote, and any other `"` is a plain character. Counting
//! every `"` (quote parity) is not enough: a stray quote inside an unquoted field (`12" disc`)
//! would make the cuts, and so the rows, depend on the block size. Blocks without any quote
//! (the usual case) are cut with one `memrchr`.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::ReaderError;
use crate::config::Compression;

/// Longest single record accepted; past this the file is assumed broken (e.g. an unbalanced
/// quote), rather than buffering it whole.
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;

pub(crate) type Source = Pin<Box<dyn AsyncRead + Send>>;

/// Bytes per read from the file system.
const READ_BYTES: usize = 1 << 20;

/// The compression a path implies.
pub(crate) fn compression_of(path: &Path, configured: Compression) -> Compression {
    if configured != Compression::Auto {
        return configured;
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".gz") || name.ends_with(".gzip") {
        Compression::Gzip
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Counts the bytes read from the file under a decompressor, so that an error in a compressed
/// stream can name the compressed offset it was found at (a truncated or damaged member).
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.read.fetch_add(n, Ordering::Relaxed);
        polled
    }
}

/// An opened input: its (decompressed) bytes, and for a compressed input how many compressed
/// bytes have been taken from the file so far.
pub(crate) struct Opened {
    pub src: Source,
    pub compressed_read: Option<Arc<AtomicU64>>,
}

/// Opens `path` for reading through its decompressor. Concatenated gzip or zstd members are
/// read as one stream, as `zcat` does.
pub(crate) async fn open(path: &Path, compression: Compression) -> Result<Opened, ReaderError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ReaderError::Open {
            path: path.to_path_buf(),
            source: e,
        })?;
    // Large reads: each refill of a tokio file is a round trip to the blocking pool.
    let mut file = file;
    file.set_max_buf_size(READ_BYTES);
    let compression = compression_of(path, compression);
    if compression == Compression::None || compression == Compression::Auto {
        // Plain input is read straight into the block buffers: a BufReader would only add a copy.
        return Ok(Opened {
            src: Box::pin(file),
            compressed_read: None,
        });
    }
    let read = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: file,
        read: read.clone(),
    };
    let buffered = BufReader::with_capacity(READ_BYTES, counted);
    let src: Source = match compression {
        Compression::Gzip => {
            let mut d = GzipDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::Zstd => {
            let mut d = ZstdDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::None | Compression::Auto => Box::pin(buffered),
    };
    Ok(Opened {
        src,
        compressed_read: Some(read),
    })
}

/// Reads `path` through its decompressor and throws the bytes away: the decode-only time that
/// bounds how fast a compressed job can go (`sweep bench decode`). Returns decompressed bytes.
pub async fn decode_only(path: &Path) -> Result<u64, ReaderError> {
    let mut src = open(path, Compression::Auto).await?.src;
    // One reused buffer, filled without zeroing: the output goes nowhere.
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES);
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = src.read_buf(&mut buf).await.map_err(|e| ReaderError::Io {
            file: path.display().to_string(),
            line: 0,
            compressed_at: None,
            source: e,
        })?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// A block of whole records and the physical line its first record starts on (1-based).
#[derive(Debug)]
pub struct Block {
    pub bytes: Vec<u8>,
    pub first_line: u64,
}

/// Reads a source in blocks of about `block_bytes`, each ending on a record boundary.
/// Block buffers handed back by the parse workers and reused by the reader. The same few
/// buffers circulate, instead of one fresh 1 MiB allocation per block that another thread frees
/// (which the allocator tends to keep, so memory crept up with input size).
#[derive(Debug)]
pub(crate) struct BlockPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BlockPool {
    /// A pool that keeps at most `keep` idle buffers: as many as can be in flight.
    pub(crate) fn new(keep: usize) -> Self {
        BlockPool {
            free: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    fn take(&self) -> Option<Vec<u8>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Returns a buffer for reuse; beyond `keep` idle buffers it is simply freed.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

pub struct BlockReader {
    src: Source,
    pool: Option<std::sync::Arc<BlockPool>>,
    /// Bytes read but not yet handed out: the start of the next block.
    carry: Vec<u8>,
    block_bytes: usize,
    /// The field delimiter: a quote right after one opens a quoted field.
    delimiter: u8,
    eof: bool,
    /// Line number of the first byte of `carry`.
    line: u64,
    /// Decompressed bytes read so far.
    pub bytes_read: u64,
}

impl BlockReader {
    pub fn new(src: Source, block_bytes: usize, delimiter: u8) -> Self {
        BlockReader {
            src,
            pool: None,
            carry: Vec::new(),
            block_bytes,
            delimiter,
            eof: false,
            line: 1,
            bytes_read: 0,
        }
    }

    /// Takes block buffers from `pool` (where parse workers return them) instead of allocating.
    pub(crate) fn with_pool(mut self, pool: std::sync::Arc<BlockPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The line the next block will start on.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads until `buf` holds at least `want` bytes or the source ends.
    async fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> std::io::Result<()> {
        while buf.len() < want && !self.eof {
            buf.reserve(want - buf.len());
            // read_buf fills spare capacity without zeroing it first.
            // Never read past `want`: a decompressor fills all the spare capacity it is given,
            // and with reused (large) buffers the excess would become an ever-growing carry.
            let room = want - buf.len();
            let n = self
                .src
                .read_buf(&mut bytes::BufMut::limit(&mut *buf, room))
                .await?;
            if n == 0 {
                self.eof = true;
            }
            self.bytes_read += n as u64;
        }
        Ok(())
    }

    /// The header record's bytes (terminator excluded, BOM removed), or `None` for an input
    /// with no bytes at all.
    pub async fn header(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = std::mem::take(&mut self.carry);
        let mut want = 64 << 10;
        loop {
            self.fill(&mut buf, want).await?;
            // Past the BOM, as the parser sees the header: a quote right after it opens a field.
            let bom = if buf.starts_with(BOM) { BOM.len() } else { 0 };
            if let Some(end) = first_record_end(&buf[bom..], self.delimiter).map(|e| e + bom) {
                let mut header = buf[..end].to_vec();
                self.carry = buf.split_off(end);
                self.line += line_ends(&header);
                strip_terminator(&mut header);
                return Ok(Some(strip_bom(header)));
            }
            if self.eof {
                if buf.is_empty() {
                    return Ok(None);
                }
                // A header with no line end: the whole input is the header.
                self.line += line_ends(&buf);
                strip_terminator(&mut buf);
                return Ok(Some(strip_bom(buf)));
            }
            if want > MAX_RECORD_BYTES {
                return Err(too_long(self.line));
            }
            want *= 2;
        }
    }

    /// The next block of whole records, or `None` at the end of the source.
    pub async fn next_block(&mut self) -> std::io::Result<Option<Block>> {
        let mut buf = self
            .pool
            .as_ref()
            .and_then(|p| p.take())
            .unwrap_or_default();
        buf.reserve(self.block_bytes + self.carry.len().max(4096));
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        let mut want = self.block_bytes;
        let cut = loop {
            self.fill(&mut buf, want).await?;
            if self.eof && buf.len() <= want {
                break buf.len();
            }
            // Cut within the first `want` bytes even when more is buffered (after the header
            // read, the carry can hold several blocks).
            if let Some(cut) = last_record_end(&buf[..want.min(buf.len())], self.delimiter) {
                break cut;
            }
            // Not one whole record yet: this record is longer than a block.
            if want > MAX_RECORD_BYTES {
                return Err(too_long(self.line));
            }
            want *= 2;
        };
        if cut == 0 {
            return Ok(None);
        }
        self.carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        let first_line = self.line;
        self.line += line_ends(&buf);
        Ok(Some(Block {
            bytes: buf,
            first_line,
        }))
    }
}

fn too_long(line: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "the record starting at line {line} is longer than {} MiB; is a quote left open?",
            MAX_RECORD_BYTES >> 20
        ),
    )
}

const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

fn strip_bom(mut v: Vec<u8>) -> Vec<u8> {
    if v.starts_with(BOM) {
        v.drain(..BOM.len());
    }
    v
}

fn strip_terminator(v: &mut Vec<u8>) {
    while matches!(v.last(), Some(b'\n' | b'\r')) {
        v.pop();
    }
}

/// The physical lines that `bytes` ends: every `\n`, and every `\r` not followed by a `\n`
/// (old Mac line ends; csv-core ends a record at each of `\r`, `\n` and `\r\n`). A `\r` that is
/// the last byte counts: slices are only ever cut after a decided line end or at the end of the
/// input, never between the two bytes of a `\r\n`.
pub(crate) fn line_ends(bytes: &[u8]) -> u64 {
    let lf = bytecount::count(bytes, b'\n') as u64;
    // The usual file has no `\r` at all (or only `\r\n`s): one more SIMD scan tells.
    if memchr::memchr(b'\r', bytes).is_none() {
        return lf;
    }
    lf + memchr::memchr_iter(b'\r', bytes)
        .filter(|&i| bytes.get(i + 1) != Some(&b'\n'))
        .count() as u64
}

/// Whether the line end byte at `i` ends a record, as far as `buf` can tell: a `\n` does; a `\r`
/// does unless a `\n` follows (then that `\n` ends it), and a `\r` that is the last byte of a
/// buffer that more input may follow is undecided, so it is not taken as an end.
fn ends_record(buf: &[u8], i: usize) -> bool {
    buf[i] == b'\n' || matches!(buf.get(i + 1), Some(b) if *b != b'\n')
}

/// Calls `end` with the offset just past each line end outside quotes (see `ends_record`), in
/// order, until it returns `false`. `buf` starts on a record boundary. Quotes follow the CSV
/// parser (csv-core): see the module comment.
fn record_ends(buf: &[u8], delimiter: u8, mut end: impl FnMut(usize) -> bool) {
    let mut in_quotes = false;
    // Where the last quoted field was closed: a quote right after it is `""`, an escaped quote.
    let mut closed_at = usize::MAX;
    for i in memchr::memchr3_iter(b'"', b'\n', b'\r', buf) {
        match buf[i] {
            b'"' if in_quotes => {
                in_quotes = false;
                closed_at = i;
            }
            b'"' => {
                in_quotes = i == 0
                    || closed_at == i - 1
                    || matches!(buf[i - 1], b'\n' | b'\r')
                    || buf[i - 1] == delimiter;
            }
            // A line end outside quotes ends a record; stop when `end` has seen enough.
            _ if !in_quotes && ends_record(buf, i) && !end(i + 1) => return,
            _ => {}
        }
    }
}

/// Offset just past the first line end outside quotes, if any.
fn first_record_end(buf: &[u8], delimiter: u8) -> Option<usize> {
    let mut first = None;
    record_ends(buf, delimiter, |e| {
        first = Some(e);
        false
    });
    first
}

/// Offset just past the last line end outside quotes, if any. `buf` starts on a record boundary.
fn last_record_end(buf: &[u8], delimiter: u8) -> Option<usize> {
    if memchr::memchr(b'"', buf).is_none() {
        let mut upto = buf.len();
        while let Some(i) = memchr::memrchr2(b'\n', b'\r', &buf[..upto]) {
            if ends_record(buf, i) {
                return Some(i + 1);
            }
            upto = i;
        }
        return None;
    }
    let mut last = None;
    record_ends(buf, delimiter, |e| {
        last = Some(e);
        true
    });
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(data: &'static [u8], block: usize) -> BlockReader {
        BlockReader::new(Box::pin(data), block, b',')
    }

    async fn blocks(mut r: BlockReader) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while let Some(b) = r.next_block().await.unwrap() {
            out.push((b.first_line, String::from_utf8(b.bytes).unwrap()));
        }
        out
    }

    #[tokio::test]
    async fn blocks_end_on_records_and_count_lines() {
        let mut r = reader(b"\xEF\xBB\xBFa,b\r\n1,2\r\n3,4\r\n5,6", 4096);
        assert_eq!(r.header().await.unwrap().unwrap(), b"a,b");
        assert_eq!(r.line(), 2);
        assert_eq!(blocks(r).await, [(2, "1,2\r\n3,4\r\n5,6".to_string())]);

        let mut r = reader(b"h\n1\n22\n333\n", 4096);
        r.header().await.unwrap();
        r.block_bytes = 3;
        assert_eq!(
            blocks(r).await,
            [(2, "1\n".into()), (3, "22\n".into()), (4, "333\n".into())]
        );
    }

    /// Old Mac files end lines with a bare `\r`: once read as one header line and no rows.
    #[tokio::test]
    async fn bare_cr_line_ends_cut_blocks_and_count_lines() {
        let mut r = reader(b"h\r1\r22\r333\r", 4096);
        assert_eq!(r.header().await.unwrap().unwrap(), b"h");
        assert_eq!(r.line(), 2);
        r.block_bytes = 3;
        assert_eq!(
            blocks(r).await,
            [(2, "1\r".into()), (3, "22\r".into()), (4, "333\r".into())]
        );
        // A `\r\n` is one line end even when a block window ends between its two bytes: the cut
        // waits for the byte after a `\r`, so no line is counted twice.
        for block in 1..12 {
            let mut r = reader(b"h\r\na\r\nbb\rc\n\r\nd", block);
            r.header().await.unwrap();
            let got = blocks(r).await;
            let lines: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
            let text: String = got.iter().map(|(_, t)| t.as_str()).collect();
            assert_eq!(text, "a\r\nbb\rc\n\r\nd", "block {block}");
            assert_eq!(lines.first(), Some(&2), "block {block}: {got:?}");
            if block == 1 {
                assert_eq!(lines, [2, 3, 4, 5, 6], "block {block}: {got:?}");
            }
        }
        assert_eq!(line_ends(b"a\rb\r\nc\n\rd\r"), 5);
        assert_eq!(line_ends(b"no line end"), 0);
    }

    #[tokio::test]
    async fn quoted_newlines_never_split_a_record() {
        let data: &[u8] = b"h\n\"x\ny\",1\n\"\"\"q\"\"\n\",2\n3\n";
        let mut r = reader(data, 4096);
        r.header().await.unwrap();
        r.block_bytes = 4;
        let got = blocks(r).await;
        assert_eq!(
            got,
            [
                (2, "\"x\ny\",1\n".to_string()),
                // The record with an escaped quote and a newline stays whole; the window that had
                // to grow to hold it also takes in the rest of the input.
                (4, "\"\"\"q\"\"\n\",2\n3\n".to_string()),
            ]
        );
    }

    /// Found by the `csv_reader` fuzz target: cut by quote parity, a stray quote inside an
    /// unquoted field (which the parser keeps as a plain character) joined the following lines
    /// into one block, so a quote at the start of a later field opened a field that ran to the
    /// end of whichever block it was in: the rows depended on the block size.
    #[tokio::test]
    async fn stray_quotes_inside_fields_do_not_move_cuts() {
        let data: &[u8] = b"h,i\na\"b,1\n2,2\n\"c\n3\",4\n5,5\n";
        for block in [1, 4, 7, 64] {
            let mut r = reader(data, block);
            r.header().await.unwrap();
            let got = blocks(r).await;
            // Every cut is a record end as the parser reads it: never inside `"c\n3"`.
            let starts: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
            assert!(starts.iter().all(|l| *l != 5), "block {block}: {got:?}");
            if block == 1 {
                assert_eq!(starts, [2, 3, 4, 6], "block {block}: {got:?}");
            }
        }
        // After a delimiter, a line end or a closing quote (`""`), a quote does open a field.
        let ends = |buf: &[u8], delimiter: u8| {
            let mut v = Vec::new();
            record_ends(buf, delimiter, |e| {
                v.push(e);
                true
            });
            v
        };
        let data = b"x,\"a\n\"\"\n\"\n\"q\r\n\"\n\"\"\"\n\"\n1\n";
        assert_eq!(ends(data, b','), [10, 16, 22, 24]);
        assert_eq!(last_record_end(data, b','), Some(24));
        assert_eq!(first_record_end(data, b','), Some(10));
        // With `;` as the delimiter, a quote after a comma is a plain character.
        assert_eq!(ends(b"x,\"a\n1\n", b';'), [5, 7]);
        assert!(ends(b"x,\"a\n1\n", b',').is_empty());
    }

    #[tokio::test]
    async fn a_quoted_header_field_after_a_bom_is_quoted() {
        let mut r = reader(b"\xEF\xBB\xBF\"a\nb\",c\n1,2\n", 4096);
        assert_eq!(r.header().await.unwrap().unwrap(), b"\"a\nb\",c");
        assert_eq!(blocks(r).await, [(3, "1,2\n".to_string())]);
    }

    #[tokio::test]
    async fn pooled_buffers_never_grow_blocks_past_their_size() {
        // A slice source, like a decompressor, fills all the spare capacity it is offered; a
        // reused 1 MiB buffer must still give blocks of about `block_bytes`.
        let line = b"1234567890,1234567890,1234567890,1234567890,1234567890,1234567890,123456789\n";
        let data: &'static [u8] = Box::leak(line.repeat(4000).into_boxed_slice());
        let pool = std::sync::Arc::new(BlockPool::new(4));
        pool.give(Vec::with_capacity(1 << 20));
        let mut r = BlockReader::new(Box::pin(data), 4096, b',').with_pool(pool.clone());
        let mut total = 0;
        while let Some(b) = r.next_block().await.unwrap() {
            assert!(b.bytes.len() <= 4096, "a block of {} bytes", b.bytes.len());
            assert!(
                r.carry.len() < line.len(),
                "carry of {} bytes",
                r.carry.len()
            );
            total += b.bytes.len();
            pool.give(b.bytes);
        }
        assert_eq!(total, data.len());
    }

    #[tokio::test]
    async fn empty_and_header_only_inputs() {
        let mut r = reader(b"", 4096);
        assert!(r.header().await.unwrap().is_none());
        let mut r = reader(b"a,b", 4096);
        assert_eq!(r.header().await.unwrap().unwrap(), b"a,b");
        assert!(r.next_block().await.unwrap().is_none());
    }
}
