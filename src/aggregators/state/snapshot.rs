//! The aggregate state as plain data, for the daemon's checkpoints.
//!
//! Every field is the exact integer the state folds, so a state restored from a snapshot finishes
//! into the same tables, to the byte, as the state it was taken from, and keeps merging exactly.
//! Wide sums travel as their 128-bit words and histograms in HdrHistogram's own V2 encoding. Sets
//! are written sorted, so equal states give equal bytes.

use std::sync::Arc;

use ethnum::{I256, U256};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use super::{Acc, AggState, Groups};
use crate::config::AggregatorSpec;

/// Why a snapshot cannot become a state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("aggregate snapshot is inconsistent: {0}")]
    Shape(String),
    #[error("aggregate snapshot has an unreadable histogram: {0}")]
    Histogram(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::aggregators) struct AccData {
    orders: u64,
    q_sum: u128,
    q_sq_sum: (u128, u128),
    p_sum: i128,
    pq_sum: (i128, i128),
    p_min: i64,
    p_max: i64,
    ts_min: i64,
    ts_max: i64,
}

impl From<&Acc> for AccData {
    fn from(a: &Acc) -> Self {
        AccData {
            orders: a.orders,
            q_sum: a.q_sum,
            q_sq_sum: a.q_sq_sum.into_words(),
            p_sum: a.p_sum,
            pq_sum: a.pq_sum.into_words(),
            p_min: a.p_min,
            p_max: a.p_max,
            ts_min: a.ts_min,
            ts_max: a.ts_max,
        }
    }
}

impl From<&AccData> for Acc {
    fn from(a: &AccData) -> Self {
        Acc {
            orders: a.orders,
            q_sum: a.q_sum,
            q_sq_sum: U256::from_words(a.q_sq_sum.0, a.q_sq_sum.1),
            p_sum: a.p_sum,
            pq_sum: I256::from_words(a.pq_sum.0, a.pq_sum.1),
            p_min: a.p_min,
            p_max: a.p_max,
            ts_min: a.ts_min,
            ts_max: a.ts_max,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupsData<K> {
    keys: Vec<K>,
    accs: Vec<AccData>,
    hists: Vec<Vec<u8>>,
}

/// A serialisable copy of an [`AggState`]; the spec is not part of it (it comes from the
/// pipeline, which the daemon checks against the state's own record of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggSnapshot {
    rows: u64,
    slots: GroupsData<i64>,
    securities: GroupsData<u32>,
    participants: GroupsData<u32>,
    pub(in crate::aggregators) sizes: Vec<AccData>,
    size_hists: Vec<Vec<u8>>,
    slot_participant: Vec<u64>,
    slot_security: Vec<u64>,
    size_participant: Vec<u64>,
    size_security: Vec<u64>,
    security_participant: Vec<u64>,
}

fn encode(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for I/O reasons, and every histogram here has a valid range.
    V2Serializer::new()
        .serialize(h, &mut out)
        .expect("a histogram encodes into memory");
    out
}

fn decode(bytes: &[u8]) -> Result<Histogram<u64>, SnapshotError> {
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| SnapshotError::Histogram(format!("{e:?}")))?;
    // A decoded histogram has a fixed range; the live ones grow on demand (`new_histogram`), and
    // a fixed one would clamp the next large quantity instead.
    h.auto(true);
    Ok(h)
}

fn sorted(set: &FxHashSet<u64>) -> Vec<u64> {
    let mut v: Vec<u64> = set.iter().copied().collect();
    v.sort_unstable();
    v
}

impl<K: Copy + Eq + std::hash::Hash> Groups<K> {
    fn data(&self) -> GroupsData<K> {
        GroupsData {
            keys: self.keys.clone(),
            accs: self.accs.iter().map(AccData::from).collect(),
            hists: self.hists.iter().map(encode).collect(),
        }
    }

    fn restore(&mut self, d: &GroupsData<K>, what: &str) -> Result<(), SnapshotError> {
        let hists = if self.with_hist { d.keys.len() } else { 0 };
        if d.accs.len() != d.keys.len() || d.hists.len() != hists {
            return Err(SnapshotError::Shape(format!(
                "{what}: {} keys, {} accumulators, {} histograms (expected {hists})",
                d.keys.len(),
                d.accs.len(),
                d.hists.len()
            )));
        }
        for (i, (&k, a)) in d.keys.iter().zip(&d.accs).enumerate() {
            let at = self.push(k);
            if at != i {
                return Err(SnapshotError::Shape(format!(
                    "{what}: a key is listed twice"
                )));
            }
            self.accs[at] = Acc::from(a);
            if let Some(h) = self.hists.get_mut(at) {
                *h = decode(&d.hists[i])?;
            }
        }
        Ok(())
    }
}

impl AggState {
    /// Plain data equal to this state.
    pub(crate) fn snapshot(&self) -> AggSnapshot {
        AggSnapshot {
            rows: self.rows,
            slots: self.slots.data(),
            securities: self.securities.data(),
            participants: self.participants.data(),
            sizes: self.sizes.iter().map(AccData::from).collect(),
            size_hists: self.size_hists.iter().map(encode).collect(),
            slot_participant: sorted(&self.slot_participant),
            slot_security: sorted(&self.slot_security),
            size_participant: sorted(&self.size_participant),
            size_security: sorted(&self.size_security),
            security_participant: sorted(&self.security_participant),
        }
    }

    /// The state a snapshot was taken of, under `spec` (which must be the spec it was built with).
    pub(crate) fn restore(
        spec: Arc<AggregatorSpec>,
        s: &AggSnapshot,
    ) -> Result<AggState, SnapshotError> {
        let mut st = AggState::new(spec);
        st.rows = s.rows;
        st.slots.restore(&s.slots, "hour slots")?;
        st.securities.restore(&s.securities, "securities")?;
        st.participants.restore(&s.participants, "participants")?;
        if s.sizes.len() != st.sizes.len() || s.size_hists.len() != st.size_hists.len() {
            return Err(SnapshotError::Shape(format!(
                "{} size buckets and {} size histograms",
                s.sizes.len(),
                s.size_hists.len()
            )));
        }
        for (into, from) in st.sizes.iter_mut().zip(&s.sizes) {
            *into = Acc::from(from);
        }
        for (into, from) in st.size_hists.iter_mut().zip(&s.size_hists) {
            *into = decode(from)?;
        }
        st.slot_participant = s.slot_participant.iter().copied().collect();
        st.slot_security = s.slot_security.iter().copied().collect();
        st.size_participant = s.size_participant.iter().copied().collect();
        st.size_security = s.size_security.iter().copied().collect();
        st.security_participant = s.security_participant.iter().copied().collect();
        Ok(st)
    }
}
