//! A 3-node JetStream cluster in network namespaces of the test's own, an R3 stream, three
//! daemons in three more namespaces, and the stream leader killed mid-run.
//!
//! Each server and each daemon gets a namespace joined to one bridge by a veth pair, on a
//! 10.231.X.0/24 network the test picks (the bridge holds .254, for the test's own client).
//! Everything is torn down when the test ends, pass or fail. Where namespaces cannot be created
//! (no root, no CAP_NET_ADMIN) the test says so and skips.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Fleet, batch, bus_pipeline, settle_and_check, spec};
use crate::common::{Processes, Scratch, nats_server_bin};
use crate::daemon::generate;
use sweep::daemon::nats::{Bus, partials_dir};

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// The namespaces, veth pairs and bridge of one test, deleted when dropped.
struct Net {
    tag: String,
    subnet: String,
    namespaces: Vec<String>,
}

impl Net {
    /// A bridge with the test's address on it; `Err` when the machine will not let us.
    fn new() -> Result<Net, String> {
        let r: u16 = rand::random();
        let tag = format!("{r:04x}");
        let net = Net {
            subnet: format!("10.231.{}", r % 250),
            tag,
            namespaces: Vec::new(),
        };
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}.254/24", net.subnet), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("swb{}", self.tag)
    }

    /// A namespace at `{subnet}.{host}`, joined to the bridge; its name.
    fn host(&mut self, host: u8) -> Result<String, String> {
        let ns = format!("sweep-{}-{host}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let (outer, inner) = (
            format!("sw{}h{host}", self.tag),
            format!("sw{}n{host}", self.tag),
        );
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &inner, "netns", &ns])?;
        ip(&["link", "set", &outer, "master", &self.bridge(), "up"])?;
        let addr = format!("{}.{host}/24", self.subnet);
        for args in [
            vec!["addr", "add", addr.as_str(), "dev", inner.as_str()],
            vec!["link", "set", inner.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["-n", ns.as_str()];
            full.extend(args);
            ip(&full)?;
        }
        Ok(ns)
    }

    fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.subnet)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // A namespace's end takes its end of each veth pair, and so the pair.
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("teardown: {e}");
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge()]) {
            eprintln!("teardown: {e}");
        }
    }
}

/// The server names, in namespace order.
const SERVERS: [&str; 3] = ["n1", "n2", "n3"];

/// Starts the cluster's servers, one per namespace, under a guard that kills them by process id.
fn start_servers(dir: &Path, net: &Net, namespaces: &[String]) -> Processes {
    let mut servers = Processes {
        children: Vec::new(),
    };
    for (i, (ns, name)) in namespaces.iter().zip(SERVERS).enumerate() {
        let me = net.addr(i as u8 + 1);
        let routes: Vec<String> = (1..=SERVERS.len() as u8)
            .filter(|&h| h != i as u8 + 1)
            .map(|h| format!("\"nats://{}:6222\"", net.addr(h)))
            .collect();
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: \"{me}:4222\"\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{ name: sweep, listen: \"{me}:6222\", routes: [{}] }}\n",
                dir.join(format!("{name}-store")).display(),
                routes.join(", ")
            ),
        )
        .unwrap();
        servers.spawn(
            name,
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(nats_server_bin())
                .arg("-c")
                .arg(&conf),
            dir.join(format!("{name}.log")),
        );
    }
    servers
}

/// The stream's leader, by server name, as the cluster says.
async fn leader(urls: &[String]) -> Result<String, String> {
    let client = async_nats::connect(urls.to_vec())
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream("SWEEP_FILES")
        .await
        .map_err(|e| e.to_string())?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .ok_or_else(|| "no leader".to_string())
}

/// The acceptance test for a cluster: 30 files fed to 3 daemons in their own namespaces while
/// the R3 stream's leader is killed; the tables equal `sweep run` over the 30 files.
#[test]
fn a_cluster_losing_its_stream_leader_counts_every_file_once() {
    let mut net = match Net::new() {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "note: cannot create network namespaces here ({e}), so the cluster test is \
                 skipped; it needs root (CAP_NET_ADMIN)"
            );
            return;
        }
    };
    let s = Scratch::new();
    let mut namespaces = Vec::new();
    for host in [1, 2, 3, 11, 12, 13] {
        namespaces.push(net.host(host).expect("a namespace"));
    }
    let names = generate(&s, 30, 600);
    let rows_read = batch(&s);
    let servers_dir = s.path("cluster");
    std::fs::create_dir_all(&servers_dir).unwrap();
    let mut servers = start_servers(&servers_dir, &net, &namespaces[..3]);
    let urls: Vec<String> = (1..=3)
        .map(|h| format!("nats://{}:4222", net.addr(h)))
        .collect();
    s.write("p.toml", bus_pipeline(&urls, 3).toml());
    let wrap = namespaces[3..]
        .iter()
        .map(|ns| vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()])
        .collect();
    let mut fleet = Fleet::new(&s, wrap);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The daemons create the R3 stream once the cluster has elected its meta leader.
    let bus = rt.block_on(async {
        let t0 = Instant::now();
        loop {
            match Bus::connect(&spec(&urls, 3), "test").await {
                Ok(b) => break b,
                Err(e) if t0.elapsed() > Duration::from_secs(60) => panic!("{e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    });
    let dir = partials_dir(&s.path("shared"), "stats");
    let committed = || {
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut killed = None;
    for (i, n) in names.iter().enumerate() {
        s.drop_in(n, std::fs::read(s.path(&format!("src/{n}"))).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        if i == names.len() / 2 {
            // Mid-run: some files committed, others waiting or in flight.
            let t0 = Instant::now();
            while committed() < 5 {
                assert!(t0.elapsed() < Duration::from_secs(60), "nothing committed");
                std::thread::sleep(Duration::from_millis(50));
            }
            let lead = rt.block_on(leader(&urls)).expect("the stream's leader");
            assert!(SERVERS.contains(&lead.as_str()), "leader {lead}");
            servers.kill(&lead);
            killed = Some((lead, committed()));
        }
    }
    let (lead, at) = killed.expect("the leader was killed");
    let new_lead = rt.block_on(async {
        let live: Vec<String> = urls
            .iter()
            .zip(SERVERS)
            .filter(|(_, n)| *n != lead)
            .map(|(u, _)| u.clone())
            .collect();
        let t0 = Instant::now();
        loop {
            match leader(&live).await {
                Ok(l) if l != lead => break l,
                _ if t0.elapsed() > Duration::from_secs(30) => panic!("no new stream leader"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    });
    settle_and_check(&s, &rt, &bus, &names, rows_read, &fleet);
    let logs = fleet.all_logs();
    println!(
        "cluster test: 30 files, stream leader {lead} killed with {at} committed, {new_lead} \
         took over; {} redeliveries",
        logs.matches("redelivered: ").count()
    );
    fleet.stop_all();
    drop(fleet);
    drop(servers);
    drop(net);
}
