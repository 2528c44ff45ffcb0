//! The charts, drawn by plotters into SVG text. Every chart draws aggregated numbers (a bar per
//! category or bin), never a row of a table, so a page stays small whatever the run's size.
//!
//! Category axes are numeric (category `i` spans `[i, i + 1)`) with the category names drawn
//! by us at the band centres: plotters' own labels sit on its "nice" key points, which do not
//! fall on the bands, and long names need turning or thinning.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ReportError;

pub(crate) const FONT: &str = "sans-serif";

/// The page's palette, colour-blind safe (Okabe and Ito).
pub(crate) mod palette {
    use plotters::style::RGBColor;
    pub const BLUE: RGBColor = RGBColor(0, 114, 178);
    pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
    pub const GREEN: RGBColor = RGBColor(0, 158, 115);
    pub const VERMILION: RGBColor = RGBColor(213, 94, 0);
    pub const SKY: RGBColor = RGBColor(86, 180, 233);
    pub const GREY: RGBColor = RGBColor(150, 150, 150);
}

/// One series of a bar chart: a value per category.
pub(crate) struct Series {
    pub name: String,
    pub color: RGBColor,
    pub values: Vec<f64>,
}

/// A bar chart over categories: one bar per category, the series stacked.
pub(crate) struct Bars<'a> {
    pub categories: &'a [String],
    pub series: Vec<Series>,
    /// The category axis's title.
    pub category_desc: &'a str,
    /// The value axis's title, with its unit.
    pub value_desc: &'a str,
    /// Bars run left to right, the first category at the top.
    pub horizontal: bool,
    /// Values are percentages.
    pub percent: bool,
    pub size: (u32, u32),
}

fn chart_error(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart(e.to_string())
}

/// A value-axis label: thousands as k, millions as M, billions as G.
pub(crate) fn axis_number(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    };
    format!("{text}{unit}")
}

/// The top of a value axis: a little above the largest value, so the tallest bar has room.
fn axis_top(max: f64) -> f64 {
    if max > 0.0 && max.is_finite() {
        max * 1.08
    } else {
        1.0
    }
}

/// The largest stacked total.
fn stacked_max(series: &[Series], n: usize) -> f64 {
    (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0).max(0.0))
                .sum::<f64>()
        })
        .fold(0.0, f64::max)
}

/// A point of the backend (where a chart places its data) in `area`'s own coordinates, where
/// text is drawn: they differ for every panel but the first.
fn local(area: &DrawingArea<SVGBackend<'_>, Shift>, (x, y): (i32, i32)) -> (i32, i32) {
    let (bx, by) = area.get_base_pixel();
    (x - bx, y - by)
}

/// Draws `b` on `area`, with an optional caption above it.
fn draw_bars(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    b: &Bars<'_>,
    caption: Option<&str>,
) -> Result<(), ReportError> {
    let n = b.categories.len().max(1);
    let top = axis_top(stacked_max(&b.series, n));
    let longest = b
        .categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(1) as u32;
    // Plotters writes a 16 px font as `font-size` 12.9 (it divides by 1.24): about 7 px a
    // character of digits and short words.
    let label_px = longest * 7;
    let mut builder = ChartBuilder::on(area);
    builder.margin(10).margin_right(20);
    if let Some(c) = caption {
        builder.caption(c, (FONT, 18));
    }
    let label_style = TextStyle::from((FONT, 16).into_font()).color(&BLACK);
    let value_format = |v: &f64| {
        if b.percent {
            format!("{v:.0}%")
        } else {
            axis_number(*v)
        }
    };
    if b.horizontal {
        builder
            .x_label_area_size(40)
            .y_label_area_size(label_px + 30);
        let mut chart = builder
            .build_cartesian_2d(0f64..top, 0f64..n as f64)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .y_labels(0)
            .x_labels(6)
            .x_label_formatter(&value_format)
            .x_desc(b.value_desc)
            .y_desc(b.category_desc)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .draw()
            .map_err(chart_error)?;
        let mut base = vec![0.0; n];
        for s in &b.series {
            let bars = s.values.iter().enumerate().map(|(i, &v)| {
                let y = (n - 1 - i) as f64;
                let lo = base[i];
                base[i] += v.max(0.0);
                Rectangle::new([(lo, y + 0.15), (base[i], y + 0.85)], s.color.filled())
            });
            let drawn = chart
                .draw_series(bars.collect::<Vec<_>>())
                .map_err(chart_error)?;
            let color = s.color;
            drawn.label(&s.name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
            });
        }
        for (i, c) in b.categories.iter().enumerate() {
            let (x, y) = local(area, chart.backend_coord(&(0.0, (n - 1 - i) as f64 + 0.5)));
            let style = label_style.pos(Pos::new(HPos::Right, VPos::Center));
            area.draw(&Text::new(c.clone(), (x - 6, y), style))
                .map_err(chart_error)?;
        }
        if b.series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.4))
                .label_font((FONT, 16))
                .draw()
                .map_err(chart_error)?;
        }
        return Ok(());
    }
    let plot_width = b.size.0.saturating_sub(110).max(1);
    let band = plot_width / n as u32;
    // Labels turn when they do not fit their band, and thin out when even turned they would
    // overlap (16 px a turned label).
    let turned = label_px + 4 > band;
    let every = if turned {
        (16 / band.max(1) + 1) as usize
    } else {
        1
    };
    builder
        .x_label_area_size(if turned { label_px + 34 } else { 44 })
        .y_label_area_size(64);
    let mut chart = builder
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&value_format)
        .x_desc(b.category_desc)
        .y_desc(b.value_desc)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(chart_error)?;
    let mut base = vec![0.0; n];
    for s in &b.series {
        let bars = s.values.iter().enumerate().map(|(i, &v)| {
            let lo = base[i];
            base[i] += v.max(0.0);
            Rectangle::new(
                [(i as f64 + 0.12, lo), (i as f64 + 0.88, base[i])],
                s.color.filled(),
            )
        });
        let drawn = chart
            .draw_series(bars.collect::<Vec<_>>())
            .map_err(chart_error)?;
        let color = s.color;
        drawn
            .label(&s.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    for (i, c) in b.categories.iter().enumerate().step_by(every) {
        let (x, y) = local(area, chart.backend_coord(&(i as f64 + 0.5, 0.0)));
        let text = if turned {
            Text::new(
                c.clone(),
                (x, y + 6),
                label_style
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            )
        } else {
            Text::new(
                c.clone(),
                (x, y + 6),
                label_style.pos(Pos::new(HPos::Center, VPos::Top)),
            )
        };
        area.draw(&text).map_err(chart_error)?;
    }
    if b.series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 16))
            .draw()
            .map_err(chart_error)?;
    }
    Ok(())
}

/// A bar chart as SVG text.
pub(crate) fn bars(b: &Bars<'_>) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, b.size).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        draw_bars(&root, b, None)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Bar charts over the same categories stacked one above the other, each with its caption.
pub(crate) fn panels(
    charts: &[(String, Bars<'_>)],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let areas = root.split_evenly((charts.len().max(1), 1));
        for ((caption, b), area) in charts.iter().zip(&areas) {
            draw_bars(area, b, Some(caption))?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// A histogram on a logarithmic axis: each bin `[lo, hi)` a bar of its count, the axis labelled
/// by `x_format`.
pub(crate) fn log_histogram(
    bins: &[(f64, f64, u64)],
    x_desc: &str,
    y_desc: &str,
    x_format: &dyn Fn(f64) -> String,
    size: (u32, u32),
) -> Result<String, ReportError> {
    let lo = bins.first().map_or(1.0, |b| b.0);
    let hi = bins.last().map_or(10.0, |b| b.1);
    let top = axis_top(bins.iter().map(|b| b.2 as f64).fold(0.0, f64::max));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .margin_right(48)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..top)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(12)
            .y_labels(6)
            .x_label_formatter(&|v| x_format(*v))
            .y_label_formatter(&|v| axis_number(*v))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .draw()
            .map_err(chart_error)?;
        let bars = bins
            .iter()
            .map(|&(a, b, c)| Rectangle::new([(a, 0.0), (b, c as f64)], palette::BLUE.filled()));
        chart.draw_series(bars).map_err(chart_error)?;
        // A white edge between neighbouring bars.
        let edges = bins
            .iter()
            .map(|&(a, b, c)| Rectangle::new([(a, 0.0), (b, c as f64)], WHITE.stroke_width(1)));
        chart.draw_series(edges).map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}
