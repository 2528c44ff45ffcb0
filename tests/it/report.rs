//! The HTML report of the shipped pipelines, loaded in headless Chromium (Debian's `chromium`;
//! `.ci/run` installs it, and the tests fail rather than skip without it): no console message,
//! an SVG in every chart, every number in its tables equal to the CSV tables' and the run
//! report's, and the page well under 2 MB. Also `sweep report` on CSV and Parquet folders, empty
//! inputs, and the report sink's configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{Pipeline, Scratch, data};

const MAX_PAGE_BYTES: usize = 2_000_000;

/// Runs a shipped pipeline in `s` on the shipped samples (its outputs go to `s/out/…`).
fn run_shipped(s: &Scratch, name: &str) {
    let pipeline = format!("{}/pipelines/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["run".to_string(), pipeline];
    let inputs: &[(&str, &str)] = match name {
        "centrepoint" => &[("orders", "orders_sample.csv.gz")],
        _ => &[
            ("orders", "sweep_sample_orders.csv.gz"),
            ("trades", "sweep_sample_trades.csv.gz"),
        ],
    };
    for (reader, file) in inputs {
        args.push("--set".into());
        args.push(format!("readers.{reader}.path={}", data(file).display()));
    }
    args.extend(["--set".into(), "monitor.progress=off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.sweep(&args).assert_success();
}

/// Starts headless Chromium on `page` with its console logged to stderr, in a profile folder
/// of its own (instances sharing one would wait on each other's lock).
fn chromium(profile: &Path, page: &Path, mode: &[&str]) -> Child {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(mode)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "cannot start `chromium`: install Debian's chromium and fonts-dejavu-core \
             (apt-get install chromium fonts-dejavu-core; .ci/run does)",
        )
}

/// Waits for Chromium: (stdout, stderr).
fn finish(c: Child) -> (String, String) {
    let out = c.wait_with_output().expect("chromium ran");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The page's console messages in Chromium's log. This build logs every console message,
/// whatever its level, and every uncaught exception, as
/// `[pid:tid:time:INFO:CONSOLE:LINE] "text", source: URL (LINE)`.
fn console_messages(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in `tag` (the text of one start tag).
fn attr(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[at..].find('"')?;
    Some(unescape(&tag[at..at + end]))
}

/// The rows of the page's table `data-table="ID"`: each row's `data-key` and its cells'
/// `data-col` → `data-value`.
fn html_table(dom: &str, id: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let start = dom
        .find(&format!("data-table=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id} in the page"));
    let end = start + dom[start..].find("</table>").expect("table ends");
    let mut rows = Vec::new();
    for tr in dom[start..end].split("<tr").skip(1) {
        let head = &tr[..tr.find('>').unwrap_or(tr.len())];
        let key = attr(head, "data-key").unwrap_or_default();
        let mut cells = BTreeMap::new();
        for td in tr.split("<td").skip(1) {
            let tag = &td[..td.find('>').unwrap_or(td.len())];
            if let (Some(c), Some(v)) = (attr(tag, "data-col"), attr(tag, "data-value")) {
                cells.insert(c, v);
            }
        }
        if !cells.is_empty() {
            rows.push((key, cells));
        }
    }
    rows
}

fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

fn int(v: &str) -> i128 {
    v.parse()
        .unwrap_or_else(|_| panic!("`{v}` is not an integer"))
}

/// Loads a page in Chromium twice at once (its DOM, and a screenshot kept under target/), and
/// checks what any page must: no console message, well under 2 MB, nothing fetched or run,
/// one SVG in every chart and `charts` charts. Returns the DOM.
fn load_page(s: &Scratch, page: &Path, name: &str, charts: usize) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.len() < MAX_PAGE_BYTES, "{name}: {} bytes", html.len());
    for banned in [
        "<script",
        " src=",
        "href=\"http",
        "url(",
        "@import",
        "<link",
    ] {
        assert!(!html.contains(banned), "{name} has `{banned}`");
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let dom = chromium(
        &s.path(&format!("profile-{name}-dom")),
        page,
        &["--dump-dom"],
    );
    let screenshot = chromium(
        &s.path(&format!("profile-{name}-shot")),
        page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let (dom, log) = finish(dom);
    let (_, shot_log) = finish(screenshot);
    for log in [&log, &shot_log] {
        let messages = console_messages(log);
        assert!(messages.is_empty(), "{name}: console: {messages:#?}");
    }
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "{name}: no screenshot"
    );
    println!("screenshot of the {name} report: {}", shot.display());
    assert!(dom.contains("</html>"), "{name}: the DOM was not dumped");
    let figures: Vec<&str> = dom.split("<figure").skip(1).collect();
    assert_eq!(figures.len(), charts, "{name}: charts");
    assert_eq!(dom.matches("data-chart=").count(), charts, "{name}");
    for f in &figures {
        let f = &f[..f.find("</figure>").unwrap_or(f.len())];
        assert_eq!(
            f.matches("<svg").count(),
            1,
            "{name}: a chart without its SVG: {}",
            &f[..80.min(f.len())]
        );
    }
    assert_eq!(
        dom.matches("<svg").count(),
        charts,
        "{name}: SVGs outside charts"
    );
    dom
}

/// The run section against `execution_metrics.json`: the totals and each file's ledger.
fn check_run(dom: &str, metrics: &Path) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(metrics).unwrap()).unwrap();
    let run: BTreeMap<String, String> = html_table(dom, "run")
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect();
    assert_eq!(run["pipeline"], m["pipeline"].as_str().unwrap());
    assert_eq!(run["status"], "ok");
    for k in ["rows_read", "bytes_read", "file_bytes"] {
        assert_eq!(
            int(&run[k]),
            m["totals"][k].as_u64().unwrap() as i128,
            "{k}"
        );
    }
    assert_eq!(
        run["peak_rss_mib"].parse::<f64>().unwrap(),
        m["process"]["peak_rss_mib"].as_f64().unwrap()
    );
    assert_eq!(
        int(&run["workers"]),
        m["settings"]["workers"].as_u64().unwrap() as i128
    );
    assert_eq!(int(&run["block_bytes"]), 1 << 20);
    let ledger = html_table(dom, "ledger");
    let jobs = m["jobs"].as_array().unwrap();
    assert_eq!(ledger.len(), jobs.len());
    for job in jobs {
        let file = job["file"].as_str().unwrap();
        let (_, row) = ledger
            .iter()
            .find(|(k, _)| k == file)
            .expect("a ledger row per file");
        for k in [
            "rows_read",
            "rows_kept",
            "rows_filtered_out",
            "rows_rejected",
        ] {
            assert_eq!(int(&row[k]), job[k].as_u64().unwrap() as i128, "{file} {k}");
        }
        assert_eq!(row["balanced"], "true");
    }
}

/// (key, orders, quantity) of a standard table's rows in the page.
fn keyed(dom: &str, id: &str, key: &str) -> Vec<(String, i128, i128)> {
    html_table(dom, id)
        .into_iter()
        .map(|(_, c)| (c[key].clone(), int(&c["orders"]), int(&c["quantity_sum"])))
        .collect()
}

fn csv_keyed(path: &Path, key: &str) -> Vec<(String, i128, i128)> {
    read_csv(path)
        .into_iter()
        .map(|r| (r[key].clone(), int(&r["orders"]), int(&r["quantity_sum"])))
        .collect()
}

/// The 20 keys with the most orders (ties in the table's order) and the rest summed.
fn top(mut rows: Vec<(String, i128, i128)>, n: usize) -> Vec<(String, i128, i128)> {
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let rest: Vec<_> = rows.split_off(n.min(rows.len()));
    if !rest.is_empty() {
        rows.push((
            "rest".into(),
            rest.iter().map(|r| r.1).sum(),
            rest.iter().map(|r| r.2).sum(),
        ));
    }
    rows
}

fn check_standard(dom: &str, out: &Path) {
    let summary = &read_csv(&out.join("summary.csv"))[0];
    let page: BTreeMap<String, String> = html_table(dom, "summary")
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect();
    for k in ["orders", "quantity_sum", "participants", "securities"] {
        assert_eq!(page[k], summary[k], "summary {k}");
    }
    // Hours: every hour of the CSV, and the hours between with no orders as 0.
    let hours = keyed(dom, "by_hour", "hour");
    let csv_hours = csv_keyed(&out.join("by_hour.csv"), "hour");
    let with_orders: Vec<_> = hours.iter().filter(|h| h.1 > 0).cloned().collect();
    assert_eq!(with_orders, csv_hours);
    let first = int(&csv_hours[0].0);
    let last = int(&csv_hours[csv_hours.len() - 1].0);
    assert_eq!(hours.len() as i128, last - first + 1);
    assert_eq!(
        keyed(dom, "daily", "date"),
        csv_keyed(&out.join("daily.csv"), "date")
    );
    assert_eq!(
        keyed(dom, "by_size", "size_bucket"),
        csv_keyed(&out.join("by_size.csv"), "size_bucket")
    );
    for (id, key) in [
        ("by_participant", "participantid"),
        ("by_security", "security_code"),
    ] {
        let page: Vec<_> = html_table(dom, id)
            .into_iter()
            .map(|(k, c)| {
                let key = if k == "rest" { k } else { c[key].clone() };
                (key, int(&c["orders"]), int(&c["quantity_sum"]))
            })
            .collect();
        assert_eq!(
            page,
            top(csv_keyed(&out.join(format!("{id}.csv")), key), 20),
            "{id}"
        );
    }
}

fn check_sweeps(dom: &str, out: &Path) {
    let days = read_csv(&out.join("security_days.csv"));
    for (k, v) in html_table(dom, "security_days")
        .into_iter()
        .flat_map(|(_, c)| c)
    {
        let sum: i128 = days.iter().map(|r| int(&r[&k])).sum();
        assert_eq!(int(&v), sum, "security_days {k}");
    }
    // Fill groups and scenarios: per security over its days (the sample has more security-days
    // than bars), the 15 with the most sweeps, then the others summed.
    for (id, code, series) in [
        ("groups", "fill_group", &["G1", "G2", "G3"][..]),
        ("scenarios", "scenario", &["A", "B", "C", "U"][..]),
    ] {
        let mut per: BTreeMap<i128, Vec<i128>> = BTreeMap::new();
        let rows = read_csv(&out.join(format!("{id}.csv")));
        let security_days: std::collections::BTreeSet<(String, String)> = rows
            .iter()
            .map(|r| (r["security_code"].clone(), r["date"].clone()))
            .collect();
        assert!(security_days.len() > 24, "the sample should be aggregated");
        for r in &rows {
            let k = series.iter().position(|s| *s == r[code]).unwrap();
            per.entry(int(&r["security_code"]))
                .or_insert_with(|| vec![0; series.len()])[k] += int(&r["sweeps"]);
        }
        let mut ranked: Vec<(String, Vec<i128>)> =
            per.into_iter().map(|(s, c)| (s.to_string(), c)).collect();
        ranked.sort_by_key(|(_, c)| std::cmp::Reverse(c.iter().sum::<i128>()));
        let rest = ranked.split_off(15);
        let mut sum = vec![0; series.len()];
        for (_, c) in &rest {
            for (a, b) in sum.iter_mut().zip(c) {
                *a += b;
            }
        }
        ranked.push(("rest".into(), sum));
        let page: Vec<(String, Vec<i128>)> = html_table(dom, id)
            .into_iter()
            .map(|(k, c)| {
                let key = if k == "rest" { k } else { c["key"].clone() };
                (key, series.iter().map(|s| int(&c[*s])).collect())
            })
            .collect();
        assert_eq!(page, ranked, "{id}");
    }
    let groups = read_csv(&out.join("groups.csv"));
    let venues: BTreeMap<String, String> = html_table(dom, "venues")
        .into_iter()
        .flat_map(|(_, c)| c)
        .filter(|(k, _)| k.ends_with("_qty"))
        .collect();
    for k in [
        "cp_qty",
        "lit_qty",
        "auction_qty",
        "other_qty",
        "filled_qty",
    ] {
        let sum: i128 = groups.iter().map(|r| int(&r[k])).sum();
        assert_eq!(int(&venues[k]), sum, "venues {k}");
    }
    let sweeps = read_csv(&out.join("sweeps.csv"));
    // Fill ratio by bucket of arrival quantity.
    let bucket = |q: i128| match q {
        ..=1_000 => "<=1K",
        1_001..=5_000 => "1K-5K",
        5_001..=10_000 => "5K-10K",
        10_001..=50_000 => "10K-50K",
        _ => ">50K",
    };
    let fill_ratio = html_table(dom, "fill_ratio");
    assert_eq!(fill_ratio.len(), 5);
    for (b, c) in fill_ratio {
        let these: Vec<_> = sweeps
            .iter()
            .filter(|r| bucket(int(&r["order_qty"])) == b)
            .collect();
        assert_eq!(int(&c["sweeps"]), these.len() as i128, "{b}");
        for k in ["order_qty", "filled_qty"] {
            assert_eq!(
                int(&c[k]),
                these.iter().map(|r| int(&r[k])).sum::<i128>(),
                "{b} {k}"
            );
        }
    }
    // Time to first fill: the sweeps apart from the log axis, and every bin from its edges.
    let times: Vec<Option<i128>> = sweeps
        .iter()
        .map(|r| (!r["time_to_first_fill_ns"].is_empty()).then(|| int(&r["time_to_first_fill_ns"])))
        .collect();
    let first_fill = html_table(dom, "first_fill");
    let count = |key: &str| {
        first_fill
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| int(&c["sweeps"]))
            .unwrap()
    };
    assert_eq!(
        count("missing"),
        times.iter().filter(|t| t.is_none()).count() as i128
    );
    assert_eq!(
        count("zero"),
        times.iter().filter(|t| **t == Some(0)).count() as i128
    );
    assert_eq!(
        count("negative"),
        times.iter().filter(|t| t.is_some_and(|t| t < 0)).count() as i128
    );
    let bins: Vec<i128> = first_fill
        .iter()
        .filter_map(|(_, c)| c.get("from_ns").map(|v| int(v)))
        .collect();
    assert!(bins.len() > 3, "{bins:?}");
    for (i, (_, c)) in first_fill
        .iter()
        .filter(|(_, c)| c.contains_key("from_ns"))
        .enumerate()
    {
        let lo = bins[i];
        // The next edge of 1, 2, 5 per decade.
        let hi = match lo.to_string().as_bytes()[0] {
            b'1' => lo * 2,
            b'2' => lo * 5 / 2,
            _ => lo * 2,
        };
        let n = times
            .iter()
            .filter(|t| t.is_some_and(|t| lo <= t && t < hi))
            .count() as i128;
        assert_eq!(int(&c["sweeps"]), n, "first fill from {lo} ns");
    }
    // Cost against arrival: how many sweeps of each scenario have one, and how many cost 0.
    let cost = html_table(dom, "cost");
    for s in ["A", "B", "C", "U"] {
        let these: Vec<f64> = sweeps
            .iter()
            .filter(|r| r["scenario"] == s && !r["cost_vs_arrival_bps"].is_empty())
            .map(|r| r["cost_vs_arrival_bps"].parse().unwrap())
            .collect();
        let row = |key: &str| int(&cost.iter().find(|(k, _)| k == key).unwrap().1[s]);
        assert_eq!(row("n"), these.len() as i128, "cost {s}");
        assert_eq!(
            row("0"),
            these.iter().filter(|c| **c == 0.0).count() as i128,
            "cost {s} at 0"
        );
        let binned: i128 = cost
            .iter()
            .filter(|(k, _)| !["n", "mean"].contains(&k.as_str()))
            .map(|(_, c)| int(&c[s]))
            .sum();
        assert_eq!(binned, these.len() as i128, "cost {s} bins");
    }
}

#[test]
fn the_shipped_pipelines_reports_load_cleanly_in_chromium_with_the_tables_numbers() {
    let s = Scratch::new();
    run_shipped(&s, "centrepoint");
    run_shipped(&s, "sweeps");
    let cp = load_page(&s, &s.path("out/centrepoint/report.html"), "centrepoint", 6);
    check_run(&cp, &s.path("out/centrepoint/execution_metrics.json"));
    check_standard(&cp, &s.path("out/centrepoint"));
    let sw = load_page(&s, &s.path("out/sweeps/report.html"), "sweeps", 7);
    check_run(&sw, &s.path("out/sweeps/execution_metrics.json"));
    check_sweeps(&sw, &s.path("out/sweeps"));
}

#[test]
fn the_console_check_catches_an_injected_script_error() {
    // A known line of this Chromium's log is recognised, and an ordinary one is not.
    let log = "[26839:26839:1130/083448.707725:INFO:CONSOLE:1] \"Uncaught ReferenceError: nosuch is not defined\", source: file:///tmp/bad.html (1)\n\
               [26108:26108:1130/083426.355008:WARNING:ui/base/idle/idle_linux.cc:111] None of the known D-Bus ScreenSaver services could be used.";
    assert_eq!(console_messages(log).len(), 1);
    // And a live one: a report page with an error slipped in is caught.
    let s = Scratch::new();
    run_shipped(&s, "centrepoint");
    let html = s.read("out/centrepoint/report.html");
    let bad = s.write(
        "bad.html",
        html.replace(
            "</body>",
            "<script>console.log('hi'); notDefinedAnywhere();</script></body>",
        ),
    );
    let (_, log) = finish(chromium(&s.path("profile"), &bad, &["--dump-dom"]));
    let messages = console_messages(&log);
    assert_eq!(messages.len(), 2, "{log}");
    assert!(
        messages[1].contains("notDefinedAnywhere is not defined"),
        "{messages:?}"
    );
}

/// The page with its origin line (which says where the numbers came from) taken out.
fn without_origin(page: &str) -> String {
    let start = page.find("<p class=\"origin\">").expect("origin line");
    let end = start + page[start..].find("</p>").unwrap() + "</p>".len();
    format!("{}{}", &page[..start], &page[end..])
}

/// `a` equals `b`, or the failure shows where they part.
#[track_caller]
fn assert_same_page(a: &str, b: &str) {
    if a != b {
        let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let from = at.saturating_sub(200);
        panic!(
            "the pages differ at byte {at}:\n{}\n---\n{}",
            &a[from..(at + 200).min(a.len())],
            &b[from..(at + 200).min(b.len())]
        );
    }
}

#[test]
fn sweep_report_of_an_output_folder_in_csv_or_parquet_is_the_sinks_page() {
    let s = Scratch::new();
    run_shipped(&s, "sweeps");
    let sink_page = without_origin(&s.read("out/sweeps/report.html"));
    s.sweep(&["report", "out/sweeps", "-o", "folder.html"])
        .assert_success()
        .assert_stderr_contains("folder.html");
    assert!(
        s.read("folder.html")
            .contains("From the output folder out/sweeps.")
    );
    assert_same_page(&without_origin(&s.read("folder.html")), &sink_page);
    // The same run writing Parquet tables into another folder.
    let pipeline = format!("{}/pipelines/sweeps.toml", env!("CARGO_MANIFEST_DIR"));
    let orders = format!(
        "readers.orders.path={}",
        data("sweep_sample_orders.csv.gz").display()
    );
    let trades = format!(
        "readers.trades.path={}",
        data("sweep_sample_trades.csv.gz").display()
    );
    s.sweep(&[
        "run",
        &pipeline,
        "--set",
        &orders,
        "--set",
        &trades,
        "--set",
        "sinks.tables.path=pq",
        "--set",
        "sinks.tables.formats=[\"parquet\"]",
        "--set",
        "sinks.report.path=pq/report.html",
        "--set",
        "monitor.report=pq/execution_metrics.json",
        "--set",
        "monitor.progress=off",
    ])
    .assert_success();
    assert!(s.exists("pq/sweeps.parquet") && !s.exists("pq/sweeps.csv"));
    s.sweep(&["report", "pq"]).assert_success();
    let parquet_page = without_origin(&s.read("pq/report.html"));
    // Another run, with its own timings: the sections from the stage on are the same.
    let sections = |page: &str| page[page.find("<section id=\"section-0\"").unwrap()..].to_string();
    assert_same_page(&sections(&parquet_page), &sections(&sink_page));
    // Nothing to report, or no folder: a usage error.
    s.write("empty/notes.txt", "nothing");
    s.sweep(&["report", "empty"])
        .assert_code(2)
        .assert_stderr_contains("no table");
    s.sweep(&["report", "missing"])
        .assert_code(2)
        .assert_stderr_contains("not a folder");
}

#[test]
fn empty_inputs_give_a_report_that_says_so() {
    let s = Scratch::new();
    let orders_header = "order_id,timestamp,sequence,security_code,side,price,quantity,leavesquantity,totalmatchedquantity,exchangeordertype,changereason,national_bid,national_offer,participantid\n";
    let trades_header = "orderid,tradetime,securitycode,dealsource,tradeprice,quantity,passiveaggressive,nationalbidpricesnapshot,nationalofferpricesnapshot\n";
    s.write("orders.csv", orders_header);
    s.write("trades.csv", trades_header);
    let pipeline = format!("{}/pipelines/sweeps.toml", env!("CARGO_MANIFEST_DIR"));
    s.sweep(&[
        "run",
        &pipeline,
        "--set",
        "readers.orders.path=orders.csv",
        "--set",
        "readers.trades.path=trades.csv",
        "--set",
        "monitor.progress=off",
    ])
    .assert_success();
    let page = s.read("out/sweeps/report.html");
    assert!(page.contains("No sweeps in this input"), "{page}");
    // Only the ledger is drawn: two files of no rows.
    assert_eq!(page.matches("<svg").count(), 1);
    let p = Pipeline::standard("orders.csv").section(
        "sinks.report",
        &["inputs = [\"stats\"]", "path = \"out/report.html\""],
    );
    s.run(&p).assert_success();
    let page = s.read("out/report.html");
    assert!(page.contains("No orders were kept in this input"), "{page}");
    assert_eq!(page.matches("<svg").count(), 1);
    s.sweep(&["report", "out", "-o", "again.html"])
        .assert_success();
    assert_same_page(
        &without_origin(&s.read("again.html")),
        &without_origin(&page),
    );
}

#[test]
fn the_report_sink_is_configured_like_any_sink() {
    let s = Scratch::new();
    s.write("orders.csv", "timestamp\n");
    // `format = "html"` makes a report of any path; another format on tables is an error.
    let p = Pipeline::standard("orders.csv")
        .section(
            "sinks.page",
            &["inputs = [\"stats\"]", "path = \"out/page.htm\""],
        )
        .set("sinks.page", "format = \"html\"");
    s.write("p.toml", p.toml());
    s.sweep(&["validate", "p.toml"])
        .assert_success()
        .assert_stdout_contains("page (report sink)");
    let bad = Pipeline::standard("orders.csv")
        .set("sinks.tables", "format = \"xlsx\"")
        .section(
            "sinks.page",
            &["inputs = [\"stats\"]", "path = \"out/page.html\""],
        )
        .set("sinks.page", "formats = [\"csv\"]");
    s.write("bad.toml", bad.toml());
    s.sweep(&["validate", "bad.toml"])
        .assert_code(2)
        .assert_stderr_contains(
            "`format` on a sink of tables can only be \"html\" (the report), not \"xlsx\"",
        )
        .assert_stderr_contains(
            "`formats` applies only to a sink that receives tables to write as files",
        );
    // The page may not overwrite another output.
    let clash = Pipeline::standard("orders.csv")
        .section(
            "sinks.page",
            &["inputs = [\"stats\"]", "path = \"out/by_hour.csv\""],
        )
        .set("sinks.page", "format = \"html\"");
    s.write("clash.toml", clash.toml());
    s.sweep(&["validate", "clash.toml"])
        .assert_code(2)
        .assert_stderr_contains("out/by_hour.csv");
    // A failed run (the orders lack the job's columns) writes no page, and says so.
    s.sweep(&["run", "p.toml"]).assert_code(1);
    assert!(!s.exists("out/page.htm"));
    let m: serde_json::Value = serde_json::from_str(&s.read("out/execution_metrics.json")).unwrap();
    let page = m["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "page")
        .unwrap();
    assert_eq!(page["status"], "not written");
    assert_eq!(page["detail"], "not written: the run failed");
    // The daemon never finishes a run, so it refuses the sink and says what to do instead.
    let daemon = Pipeline::standard("orders.csv")
        .section(
            "sinks.page",
            &["inputs = [\"stats\"]", "path = \"out/page.html\""],
        )
        .set("daemon", "state = \"state\"");
    s.write("d.toml", daemon.toml());
    s.sweep(&["daemon", "d.toml"])
        .assert_code(2)
        .assert_stderr_contains("sweep report");
}
