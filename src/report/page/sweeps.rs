//! The sweep job's section of the page: its accounting, stacked fill groups and scenarios, venue
//! classes, time to first fill, costs per scenario and fill ratio by size, each a chart beside
//! its table.

use maud::{Markup, html};

use super::*;

pub(super) fn sweeps_section(i: usize, s: &Sweeps) -> Result<Markup, ReportError> {
    let count = s.count();
    let mut parts = Vec::new();
    if count == 0 {
        parts.push(empty(
            "sweeps",
            "No sweeps in this input, so there is nothing to chart.",
        ));
    } else {
        parts.push(match &s.groups {
            Some(g) => stacked(
                "groups",
                "Sweeps by fill group, per security and day",
                g,
                &[palette::GREEN, palette::ORANGE, palette::VERMILION],
                "G1 fully filled (no quantity left), G2 partly filled, G3 not filled, by the order's final state.",
            )?,
            None => missing("groups"),
        });
        parts.push(match &s.scenarios {
            Some(g) => stacked(
                "scenarios",
                "Sweeps by scenario, per security and day",
                g,
                &[palette::GREEN, palette::BLUE, palette::ORANGE, palette::GREY],
                "A filled (99% of the arrival quantity) within 1 s of arrival, B filled later, C partly or not filled, U filled but the arrival is unknown.",
            )?,
            None => missing("scenarios"),
        });
        parts.push(match &s.venues {
            Some(v) => venues(v)?,
            None => missing("groups"),
        });
        match &s.per_sweep {
            Some(p) => {
                parts.push(first_fill(&p.first_fill)?);
                parts.push(cost(p)?);
                parts.push(fill_ratio(p)?);
            }
            None => parts.push(missing("sweeps")),
        }
    }
    Ok(html! {
        section id=(format!("section-{i}")) data-section="sweeps" data-stage=(s.stage) {
            h2 { "Sweeps: " (s.stage) }
            p.note { (int(count)) " Centre Point sweeps." }
            @match &s.accounting {
                Some(a) => (accounting(a)),
                None => (missing("security_days")),
            }
            @for p in &parts { (p) }
        }
    })
}

fn accounting(a: &Accounting) -> Markup {
    let label = |c: &str| match c {
        "order_events" => "order events read",
        "orders" => "orders",
        "cp_orders" => "Centre Point orders",
        "sweeps" => "sweeps",
        "cp_orders_traded" => "Centre Point orders with a trade",
        "sweeps_traded" => "sweeps with a trade",
        "sweeps_unknown_arrival" => "sweeps whose arrival is unknown",
        "sweeps_bad_quote" => "sweeps with an unusable arrival quote",
        "trade_rows" => "trade rows read",
        "cp_trade_rows" => "trade rows of Centre Point orders",
        "sweep_trade_rows" => "trade rows of sweeps",
        "unmatched_trade_rows" => "trade rows with no order in the orders file",
        _ => "",
    };
    html! {
        table.facts data-table="security_days" {
            tbody {
                @for (c, v) in &a.totals {
                    tr { td { (label(c)) } (big_cell(c, *v)) }
                }
            }
        }
    }
}

fn stacked(
    id: &str,
    title: &str,
    g: &Stacked,
    colors: &[RGBColor],
    legend: &str,
) -> Result<Markup, ReportError> {
    let categories: Vec<String> = g.bars.iter().map(|b| b.0.clone()).collect();
    let series = g
        .series
        .iter()
        .enumerate()
        .map(|(k, name)| Series {
            name: name.to_string(),
            color: colors[k % colors.len()],
            values: g.bars.iter().map(|b| b.1[k] as f64).collect(),
        })
        .collect();
    // The other securities are a line of the table, not a bar: summed, they would dwarf the
    // bars of the ones shown.
    let mut rows = g.bars.clone();
    if let Some((n, counts)) = &g.rest {
        rows.push((format!("the other {n}"), counts.clone()));
    }
    let svg = charts::bars(&Bars {
        categories: &categories,
        series,
        category_desc: if g.per_security {
            "security (all days)"
        } else {
            "security and day"
        },
        value_desc: "sweeps",
        horizontal: true,
        percent: false,
        size: (760, bars_height(categories.len())),
    })?;
    let note = html! {
        p.note {
            (legend)
            @if g.per_security {
                " The table has " (int(g.security_days)) " security-days, too many for a bar each: bars are per security, summed over days, "
                "the " (g.bars.len()) " securities with the most sweeps"
                @if let Some((n, _)) = &g.rest { "; the other " (int(*n)) " are summed in the table's last line" }
                "."
            }
        }
    };
    let table = html! {
        table data-table=(id) {
            thead { tr { th.key { @if g.per_security { "security" } @else { "security, day" } } @for s in g.series { th { (s) } } th { "sweeps" } } }
            tbody {
                @for (i, (label, counts)) in rows.iter().enumerate() {
                    @let is_rest = i >= g.bars.len();
                    tr.rest[is_rest] data-key=(if is_rest { "rest" } else { label.as_str() }) {
                        (key_cell("key", label))
                        @for (k, s) in g.series.iter().enumerate() { (count_cell(s, counts[k])) }
                        (count_cell("sweeps", counts.iter().sum()))
                    }
                }
            }
        }
    };
    Ok(figure(id, title, note, svg, table, false))
}

fn venues(v: &Venues) -> Result<Markup, ReportError> {
    let classes = v.classes();
    let total = v.total();
    if total == 0 {
        return Ok(empty(
            "venues",
            "No sweep was filled, so no quantity by venue.",
        ));
    }
    let categories: Vec<String> = classes.iter().map(|c| c.1.to_string()).collect();
    let svg = charts::bars(&Bars {
        categories: &categories,
        series: vec![Series {
            name: "filled".into(),
            color: palette::BLUE,
            values: classes.iter().map(|c| c.2 as f64).collect(),
        }],
        category_desc: "venue class",
        value_desc: "filled quantity (shares)",
        horizontal: false,
        percent: false,
        size: (760, 340),
    })?;
    let note = html! { p.note { "Quantity of every sweep's fills by where it traded: Centre Point (deal sources 46–52), lit (1, 44), auction (20, 45), other (trade reports, crossings, …)." } };
    let table = html! {
        table data-table="venues" {
            thead { tr { th.key { "venue class" } th { "filled (shares)" } th { "share" } } }
            tbody {
                @for (col, label, q) in classes {
                    tr data-key=(col) { (key_cell("class", label)) (big_cell(col, q)) td { (share(q as f64, total as f64)) } }
                }
                tr data-key="total" { td.key { "all" } (big_cell("filled_qty", total)) td { "100%" } }
            }
        }
    };
    Ok(figure(
        "venues",
        "Filled quantity by venue class",
        note,
        svg,
        table,
        false,
    ))
}

fn first_fill(f: &FirstFill) -> Result<Markup, ReportError> {
    let shown = f.shown();
    let bins: Vec<(f64, f64, u64)> = shown
        .iter()
        .map(|&(lo, hi, c)| (lo as f64, hi.map_or(lo as f64 * 2.0, |h| h as f64), c))
        .collect();
    let apart = html! {
        p.note {
            "Time from a sweep's arrival to its first fill, in bins of 1, 2 and 5 per decade on a log axis. "
            (int(f.zero)) " sweeps filled in the arrival's own nanosecond (time 0) and " (int(f.negative))
            " before it (negative times): a log axis cannot show them, the table does. "
            (int(f.missing)) " have no time (no fill, or an unknown arrival)."
        }
    };
    let table = html! {
        table data-table="first_fill" {
            thead { tr { th.key { "time to first fill" } th { "sweeps" } } }
            tbody {
                tr data-key="missing" { td.key { "no time" } (count_cell("sweeps", f.missing)) }
                tr data-key="negative" { td.key { "below 0" } (count_cell("sweeps", f.negative)) }
                tr data-key="zero" { td.key { "0" } (count_cell("sweeps", f.zero)) }
                @for (lo, hi, c) in &shown {
                    tr data-key=(lo) {
                        td.key data-col="from_ns" data-value=(lo) {
                            @match hi { Some(h) => { (ns(*lo as f64)) " to " (ns(*h as f64)) }, None => { (ns(*lo as f64)) " and more" } }
                        }
                        (count_cell("sweeps", *c))
                    }
                }
            }
        }
    };
    if bins.is_empty() {
        return Ok(html! {
            (empty("first_fill", "No sweep has a positive time to first fill, so there is no histogram."))
            (apart)
            (table)
        });
    }
    let svg = charts::log_histogram(
        &bins,
        "time from arrival to first fill (log scale)",
        "sweeps",
        &ns,
        (760, 380),
    )?;
    Ok(figure(
        "first_fill",
        "Time to first fill",
        apart,
        svg,
        table,
        false,
    ))
}

fn cost(p: &PerSweep) -> Result<Markup, ReportError> {
    let with: Vec<&model::ScenarioCost> = p.cost.iter().filter(|c| c.n > 0).collect();
    let note = html! {
        p.note {
            "Cost against the arrival mid, in basis points, signed by side: positive is worse for the sweep. "
            "Each panel is one scenario's share of its sweeps with a cost in each bin; bins below 0 hold their lower edge, above 0 their upper edge, and exactly 0 (a fill at the arrival mid) is its own bin. "
            "Sweeps without a cost (no fill, unknown arrival or an unusable quote) are left out."
        }
    };
    let table = html! {
        table data-table="cost" {
            thead { tr { th.key { "bps" } @for c in &p.cost { th { (c.scenario) } } } }
            tbody {
                @for (b, label) in COST_BINS.iter().enumerate() {
                    tr data-key=(label) {
                        (key_cell("bin", label))
                        @for c in &p.cost { (count_cell(c.scenario, c.counts[b])) }
                    }
                }
                tr data-key="n" { td.key { "sweeps with a cost" } @for c in &p.cost { (count_cell(c.scenario, c.n)) } }
                tr data-key="mean" { td.key { "mean (bps)" } @for c in &p.cost { (num(c.scenario, c.mean().map_or(String::new(), |m| m.to_string()), float(c.mean(), 2))) } }
                tr data-key="min" { td.key { "least (bps)" } @for c in &p.cost { td { @if c.n > 0 { (format!("{:.2}", c.min)) } @else { "–" } } } }
                tr data-key="max" { td.key { "most (bps)" } @for c in &p.cost { td { @if c.n > 0 { (format!("{:.2}", c.max)) } @else { "–" } } } }
            }
        }
    };
    if with.is_empty() {
        return Ok(html! {
            (empty("cost", "No sweep has a cost against arrival (each needs a fill, a known arrival and a usable quote)."))
            (table)
        });
    }
    let categories: Vec<String> = COST_BINS.iter().map(|s| s.to_string()).collect();
    let colors = [
        palette::GREEN,
        palette::BLUE,
        palette::ORANGE,
        palette::GREY,
    ];
    let panels: Vec<(String, Bars<'_>)> = with
        .iter()
        .map(|c| {
            let k = SCENARIOS.iter().position(|s| *s == c.scenario).unwrap_or(0);
            (
                format!("scenario {}: {} sweeps", c.scenario, int(c.n)),
                Bars {
                    categories: &categories,
                    series: vec![Series {
                        name: c.scenario.to_string(),
                        color: colors[k],
                        values: c
                            .counts
                            .iter()
                            .map(|&n| 100.0 * n as f64 / c.n as f64)
                            .collect(),
                    }],
                    category_desc: "cost against arrival (bps)",
                    value_desc: "share of sweeps (%)",
                    horizontal: false,
                    percent: true,
                    size: (1200, 260),
                },
            )
        })
        .collect();
    let svg = charts::panels(&panels, (1200, 260 * panels.len() as u32))?;
    Ok(figure(
        "cost",
        "Cost against arrival by scenario",
        note,
        svg,
        table,
        true,
    ))
}

fn fill_ratio(p: &PerSweep) -> Result<Markup, ReportError> {
    let categories: Vec<String> = SIZE_BUCKETS.iter().map(|s| s.to_string()).collect();
    let svg = charts::bars(&Bars {
        categories: &categories,
        series: vec![Series {
            name: "fill ratio".into(),
            color: palette::SKY,
            values: p
                .sizes
                .iter()
                .map(|s| 100.0 * s.ratio().unwrap_or(0.0))
                .collect(),
        }],
        category_desc: "order size at arrival (shares)",
        value_desc: "filled / ordered (%)",
        horizontal: false,
        percent: true,
        size: (760, 340),
    })?;
    let note = html! { p.note { "Σ filled quantity / Σ arrival quantity of the sweeps in each bucket of their arrival quantity (order_qty): <=1K holds 0 to 1,000 shares, 1K-5K above 1,000 up to 5,000, and so on; each bucket holds its upper edge. Above 100% means sweeps amended up filled more than they arrived with." } };
    let table = html! {
        table data-table="fill_ratio" {
            thead { tr { th.key { "order size" } th { "sweeps" } th { "ordered (shares)" } th { "filled (shares)" } th { "fill ratio" } } }
            tbody {
                @for (b, s) in SIZE_BUCKETS.iter().zip(&p.sizes) {
                    tr data-key=(b) {
                        (key_cell("bucket", b)) (count_cell("sweeps", s.sweeps))
                        (num("order_qty", s.order_qty, int(s.order_qty))) (num("filled_qty", s.filled_qty, int(s.filled_qty)))
                        (num("fill_ratio", s.ratio().map_or(String::new(), |r| r.to_string()), s.ratio().map_or_else(|| "–".to_string(), |r| format!("{:.1}%", 100.0 * r))))
                    }
                }
            }
        }
    };
    Ok(figure(
        "fill_ratio",
        "Fill ratio by order size",
        note,
        svg,
        table,
        false,
    ))
}
