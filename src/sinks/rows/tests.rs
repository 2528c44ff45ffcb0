use std::fs::{self, File};
use std::io::Read;
use std::sync::Arc;

use arrow_array::{Int64Array, StringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::SchemaRef;
use parquet::basic::Compression;

use super::writer::{RowWriter, RowsError, RowsWritten};
use crate::config::RowSinkSpec;
use crate::sinks::format::{PartitionKey, RowFormat};
use crate::time::Zone;

const SECOND: i64 = 1_000_000_000;
/// 2024-10-06T12:00Z: 23:00 AEDT on the 6th in Sydney.
const UTC_12_00: i64 = 1_728_216_000 * SECOND;
/// 2024-10-06T13:00Z: midnight AEDT, the 7th in Sydney.
const UTC_13_00: i64 = 1_728_219_600 * SECOND;
/// 2024-10-06T14:30Z: 01:30 AEDT on the 7th in Sydney.
const UTC_14_30: i64 = 1_728_225_000 * SECOND;

type Row = (u64, i64, u32, &'static str);

fn schema() -> SchemaRef {
    crate::schema::arrow_schema(
        &[
            "order_id",
            "timestamp",
            "security_code",
            "timevaliditydecoded",
        ]
        .map(String::from),
    )
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
    .unwrap()
}

fn spec(path: PathBuf, format: RowFormat, partition_by: &[PartitionKey]) -> RowSinkSpec {
    RowSinkSpec {
        path,
        format,
        partition_by: partition_by.to_vec(),
        zone: Zone::default(),
        compression_level: None,
        max_open_files: 64,
        columns: None,
        pause_per_batch: std::time::Duration::ZERO,
        sort: None,
        row_group_rows: None,
    }
}

fn write_all(spec: &RowSinkSpec, batches: &[RecordBatch]) -> RowsWritten {
    let mut w = RowWriter::create(spec, schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.commit().unwrap()
}

/// Every file under `dir`, as sorted `/`-separated relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

fn read_parquet(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&schema(), &batches).unwrap()
}

const HEADER: &str = "order_id,timestamp,security_code,timevaliditydecoded\n";

fn sample() -> Vec<RecordBatch> {
    vec![
        batch(&[
            (
                u64::MAX,
                1_725_494_536_001_032_398,
                110_621,
                "Good Till Cancel",
            ),
            (1 << 63, -1, 5, "a,\"b\""),
        ]),
        batch(&[(1, 0, 0, "")]),
    ]
}

const SAMPLE_CSV: &str = "order_id,timestamp,security_code,timevaliditydecoded\n\
    18446744073709551615,1725494536001032398,110621,Good Till Cancel\n\
    9223372036854775808,-1,5,\"a,\"\"b\"\"\"\n\
    1,0,0,\n";

#[test]
fn csv_bytes_are_exact_and_large_ids_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let summary = write_all(&spec(path.clone(), RowFormat::Csv, &[]), &sample());
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, SAMPLE_CSV);
    assert_eq!(
        summary,
        RowsWritten {
            rows: 3,
            files: 1,
            bytes: SAMPLE_CSV.len() as u64
        }
    );
    let ids: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, [u64::MAX, 1 << 63, 1]);
    assert_eq!(files_under(dir.path()), ["out.csv"]);
}

#[test]
fn compressed_csv_decompresses_to_the_csv_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("out.csv.gz");
    let zst = dir.path().join("out.csv.zst");
    let gz_summary = write_all(&spec(gz.clone(), RowFormat::CsvGz, &[]), &sample());
    let zst_summary = write_all(&spec(zst.clone(), RowFormat::CsvZst, &[]), &sample());

    let mut text = String::new();
    flate2::read::GzDecoder::new(File::open(&gz).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, SAMPLE_CSV);
    let unzstd = zstd::stream::decode_all(File::open(&zst).unwrap()).unwrap();
    assert_eq!(String::from_utf8(unzstd).unwrap(), SAMPLE_CSV);

    assert_eq!(gz_summary.bytes, fs::metadata(&gz).unwrap().len());
    assert_eq!(zst_summary.bytes, fs::metadata(&zst).unwrap().len());
    assert_eq!((gz_summary.rows, gz_summary.files), (3, 1));
    // The gzip magic and the zstd frame magic: the files really are compressed.
    assert_eq!(fs::read(&gz).unwrap()[..2], [0x1f, 0x8b]);
    assert_eq!(fs::read(&zst).unwrap()[..4], [0x28, 0xb5, 0x2f, 0xfd]);
}

#[test]
fn parquet_reads_back_identical_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.parquet");
    let summary = write_all(&spec(path.clone(), RowFormat::Parquet, &[]), &sample());
    let expected = arrow_select::concat::concat_batches(&schema(), &sample()).unwrap();
    assert_eq!(read_parquet(&path), expected);
    assert_eq!(summary.rows, 3);
    assert_eq!(summary.bytes, fs::metadata(&path).unwrap().len());

    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
    assert_eq!(builder.schema(), &schema());
    let chunk = builder.metadata().row_group(0).column(0);
    assert!(matches!(chunk.compression(), Compression::ZSTD(_)));
}

#[test]
fn empty_extract_is_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("empty.csv");
    let summary = write_all(&spec(csv.clone(), RowFormat::Csv, &[]), &[batch(&[])]);
    assert_eq!(fs::read_to_string(&csv).unwrap(), HEADER);
    assert_eq!(
        summary,
        RowsWritten {
            rows: 0,
            files: 1,
            bytes: HEADER.len() as u64
        }
    );

    let pq = dir.path().join("empty.parquet");
    write_all(&spec(pq.clone(), RowFormat::Parquet, &[]), &[]);
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&pq).unwrap()).unwrap();
    assert_eq!(builder.schema(), &schema());
    assert_eq!(builder.metadata().file_metadata().num_rows(), 0);
    assert_eq!(read_parquet(&pq).num_rows(), 0);
}

#[test]
fn partitions_by_security_and_sydney_date() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    let keys = [PartitionKey::Security, PartitionKey::Date];
    let summary = write_all(
        &spec(root.clone(), RowFormat::Csv, &keys),
        &[
            batch(&[
                (1, UTC_12_00, 110_621, "a"),
                (2, UTC_14_30, 110_621, "b"),
                (3, UTC_12_00, 5, "c"),
            ]),
            batch(&[
                (4, UTC_13_00, 110_621, "d"),
                (6, UTC_14_30 + 1, 110_621, "f"),
                (5, UTC_12_00 + 1, 110_621, "e"),
            ]),
        ],
    );
    let expected = [
        (
            "security_code=110621/date=2024-10-06/part-00000.csv",
            format!(
                "{HEADER}1,{UTC_12_00},110621,a\n5,{},110621,e\n",
                UTC_12_00 + 1
            ),
        ),
        (
            "security_code=110621/date=2024-10-07/part-00000.csv",
            format!(
                "{HEADER}2,{UTC_14_30},110621,b\n4,{UTC_13_00},110621,d\n6,{},110621,f\n",
                UTC_14_30 + 1
            ),
        ),
        (
            "security_code=5/date=2024-10-06/part-00000.csv",
            format!("{HEADER}3,{UTC_12_00},5,c\n"),
        ),
    ];
    assert_eq!(
        files_under(&root),
        expected
            .iter()
            .map(|(p, _)| p.to_string())
            .collect::<Vec<_>>()
    );
    for (file, content) in &expected {
        assert_eq!(
            &fs::read_to_string(root.join(file)).unwrap(),
            content,
            "{file}"
        );
    }
    let bytes: usize = expected.iter().map(|(_, c)| c.len()).sum();
    assert_eq!(
        summary,
        RowsWritten {
            rows: 6,
            files: 3,
            bytes: bytes as u64
        }
    );
    // Only the committed folder remains beside it: no temporary names.
    assert_eq!(files_under(dir.path()).len(), 3);
}

#[test]
fn folder_levels_follow_partition_by_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    let mut s = spec(
        root.clone(),
        RowFormat::CsvGz,
        &[PartitionKey::Date, PartitionKey::Security],
    );
    // In UTC, 14:30Z on the 6th is still the 6th.
    s.zone = Zone::Fixed(0);
    write_all(&s, &[batch(&[(2, UTC_14_30, 7, "b")])]);
    assert_eq!(
        files_under(&root),
        ["date=2024-10-06/security_code=7/part-00000.csv.gz"]
    );
}

#[test]
fn evicted_partitions_continue_in_the_next_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    let mut s = spec(root.clone(), RowFormat::Parquet, &[PartitionKey::Security]);
    s.max_open_files = 1;
    let a = |id| (id, UTC_12_00 + id as i64, 10, "a");
    let b = |id| (id, UTC_12_00 + id as i64, 20, "b");
    let summary = write_all(
        &s,
        &[
            batch(&[a(1), b(2), a(3)]),
            batch(&[a(4), b(5)]),
            batch(&[a(6)]),
        ],
    );
    assert_eq!(
        files_under(&root),
        [
            "security_code=10/part-00000.parquet",
            "security_code=10/part-00001.parquet",
            "security_code=10/part-00002.parquet",
            "security_code=20/part-00000.parquet",
            "security_code=20/part-00001.parquet",
        ]
    );
    let part = |name: &str| read_parquet(&root.join(name));
    // Rows 1 and 3 share a batch, so they reach partition 10 together before 20 evicts it.
    assert_eq!(
        part("security_code=10/part-00000.parquet"),
        batch(&[a(1), a(3)])
    );
    assert_eq!(part("security_code=10/part-00001.parquet"), batch(&[a(4)]));
    assert_eq!(part("security_code=10/part-00002.parquet"), batch(&[a(6)]));
    assert_eq!(part("security_code=20/part-00000.parquet"), batch(&[b(2)]));
    assert_eq!(part("security_code=20/part-00001.parquet"), batch(&[b(5)]));
    assert_eq!((summary.rows, summary.files), (6, 5));
    let bytes: u64 = files_under(&root)
        .iter()
        .map(|f| fs::metadata(root.join(f)).unwrap().len())
        .sum();
    assert_eq!(summary.bytes, bytes);
}

#[test]
fn dropping_without_commit_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut parts = spec(
        dir.path().join("parts"),
        RowFormat::CsvZst,
        &[PartitionKey::Security],
    );
    parts.max_open_files = 1;
    let single = spec(dir.path().join("out.parquet"), RowFormat::Parquet, &[]);
    for s in [parts, single] {
        let mut w = RowWriter::create(&s, schema()).unwrap();
        // Two partitions with one open file: the first part is finished before the drop.
        w.write(&batch(&[(1, 0, 1, "x"), (2, 0, 2, "y")])).unwrap();
        assert!(!files_under(dir.path()).is_empty());
        drop(w);
    }
    assert_eq!(files_under(dir.path()), Vec::<String>::new());
}

#[test]
fn unwritable_destination_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, "a file, not a folder").unwrap();
    for (name, keys) in [("out.csv", &[][..]), ("parts", &[PartitionKey::Date][..])] {
        let path = blocker.join(name);
        let err = RowWriter::create(&spec(path.clone(), RowFormat::Csv, keys), schema())
            .err()
            .unwrap();
        assert!(matches!(err, RowsError::Output(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{}: ", path.display())),
            "{message}"
        );
    }
}

#[test]
fn bad_specs_and_rows_are_refused_with_the_path() {
    assert_eq!(RowFormat::from_path("a/b.CSV").unwrap(), RowFormat::Csv);
    assert_eq!(RowFormat::from_path("b.csv.GZ").unwrap(), RowFormat::CsvGz);
    assert_eq!(
        RowFormat::from_path("b.Csv.Zst").unwrap(),
        RowFormat::CsvZst
    );
    assert_eq!(
        RowFormat::from_path("b.parquet").unwrap(),
        RowFormat::Parquet
    );
    for bad in ["b.gz", "b.tsv", ".csv", "b", "bcsv"] {
        let err = RowFormat::from_path(bad).err().unwrap();
        assert!(err.to_string().starts_with(&format!("{bad}: ")), "{err}");
    }
    assert_eq!(
        "security_code".parse::<PartitionKey>().unwrap(),
        PartitionKey::Security
    );
    assert_eq!("date".parse::<PartitionKey>().unwrap(), PartitionKey::Date);
    assert!("security".parse::<PartitionKey>().is_err());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.csv.gz");
    let mut s = spec(path.clone(), RowFormat::CsvGz, &[]);
    s.compression_level = Some(10);
    let err = RowWriter::create(&s, schema()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: compression level 10 is out of range for csv.gz: use 0 to 9",
            path.display()
        )
    );

    let no_time = crate::schema::arrow_schema(&["order_id".to_string()]);
    let root = dir.path().join("parts");
    let s = spec(root.clone(), RowFormat::Csv, &[PartitionKey::Date]);
    let err = RowWriter::create(&s, no_time).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: partitioning by date needs column `timestamp`, which the input does not have",
            root.display()
        )
    );
    let twice = spec(
        root.clone(),
        RowFormat::Csv,
        &[PartitionKey::Date, PartitionKey::Date],
    );
    assert!(matches!(
        RowWriter::create(&twice, schema()),
        Err(RowsError::DuplicatePartitionKey { .. })
    ));
    let mut none_open = spec(root.clone(), RowFormat::Csv, &[PartitionKey::Date]);
    none_open.max_open_files = 0;
    assert!(matches!(
        RowWriter::create(&none_open, schema()),
        Err(RowsError::NoOpenFiles { .. })
    ));

    // Rows with other columns are refused, and the extract can no longer be committed.
    let out = dir.path().join("out.csv");
    let mut w = RowWriter::create(&spec(out.clone(), RowFormat::Csv, &[]), schema()).unwrap();
    let other = RecordBatch::try_new(
        crate::schema::arrow_schema(&["order_id".to_string()]),
        vec![Arc::new(UInt64Array::from(vec![1u64]))],
    )
    .unwrap();
    let err = w.write(&other).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: rows do not match the extract's columns: expected 4 columns, got 1",
            out.display()
        )
    );
    assert!(matches!(w.commit(), Err(RowsError::Poisoned { .. })));
    assert_eq!(files_under(dir.path()), Vec::<String>::new());
}

#[test]
fn writer_is_send() {
    fn send<T: Send>() {}
    send::<RowWriter>();
}
