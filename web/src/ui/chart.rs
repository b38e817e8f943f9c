//! Bar charts drawn as SVG on the server: no script, no vendored library,
//! and each bar carries its value as text (a `<title>` tooltip) so the
//! chart is readable without colour or a mouse.
//!
//! The SVG scales with its box (a `viewBox`, text included), so labels that
//! do not overlap at one width overlap at none: the axis labels are spaced
//! from their length in the chart's own units.

use std::fmt::Write;

/// One bar: its label under the axis and its value.
pub struct Bar {
    pub label: String,
    pub value: f64,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Width of the chart in its own units.
const W: f64 = 640.0;
/// Font size of labels (`svg.chart .tick` in app.css says the same).
const TICK_FONT: f64 = 10.0;
/// A generous width of one character of a label, in font sizes: digits
/// and most letters of system-ui are narrower.
const CHAR_EM: f64 = 0.65;

/// The width a label takes, in chart units.
fn label_width(label: &str) -> f64 {
    label.chars().count() as f64 * TICK_FONT * CHAR_EM
}

/// Draw the label of every `n`th bar, where `n` is the smallest step at
/// which the longest label fits in the slots between two drawn ones.
fn label_every(bars: &[Bar], slot: f64) -> usize {
    let widest = bars
        .iter()
        .map(|b| label_width(&b.label))
        .fold(0.0, f64::max);
    let need = widest + TICK_FONT; // a gap of one font size
    ((need / slot.max(1.0)).ceil() as usize).max(1)
}

/// `label` cut to `max` characters, with `…` when cut.
fn cut(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// An SVG bar chart; `show` formats a value (bytes, counts).
pub fn bars(title: &str, bars: &[Bar], show: impl Fn(f64) -> String) -> String {
    const H: f64 = 200.0;
    const LEFT: f64 = 64.0;
    const BOTTOM: f64 = 28.0;
    const TOP: f64 = 24.0;
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let total: f64 = bars.iter().map(|b| b.value).sum();
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - TOP;
    let n = bars.len().max(1) as f64;
    let slot = plot_w / n;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}: total {total}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = escape(title),
        total = escape(&show(total)),
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="14" class="chart-title">{} (total {})</text>"#,
        escape(title),
        escape(&show(total))
    );
    // The axis: zero and the maximum.
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" class="axis"/><text x="{}" y="{base}" class="tick" text-anchor="end">0</text><text x="{}" y="{}" class="tick" text-anchor="end">{}</text>"#,
        W - 8.0,
        LEFT - 4.0,
        LEFT - 4.0,
        TOP + 8.0,
        escape(&show(max)),
    );
    let label_every = label_every(bars, slot);
    for (i, b) in bars.iter().enumerate() {
        let h = if max > 0.0 {
            b.value / max * plot_h
        } else {
            0.0
        };
        let x = LEFT + i as f64 * slot + slot * 0.1;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
            base - h,
            slot * 0.8,
            escape(&b.label),
            escape(&show(b.value)),
        );
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" class="tick x-label" text-anchor="middle">{}</text>"#,
                x + slot * 0.4,
                H - 10.0,
                escape(&b.label),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar chart, one row per bar, largest first: long lists
/// (34 pollers) and long names stay legible, each row with its value.
pub fn hbars(title: &str, bars: &[Bar], show: impl Fn(f64) -> String) -> String {
    const ROW: f64 = 18.0;
    const TOP: f64 = 24.0;
    const LEFT: f64 = 160.0;
    const VALUE: f64 = 72.0;
    /// Characters of a name that fit left of the bars; the whole name is in
    /// the row's title.
    const NAME_CHARS: usize = 22;
    let mut sorted: Vec<&Bar> = bars.iter().collect();
    sorted.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.label.cmp(&b.label))
    });
    let max = sorted.first().map_or(0.0, |b| b.value);
    let total: f64 = bars.iter().map(|b| b.value).sum();
    let h = TOP + ROW * sorted.len().max(1) as f64 + 8.0;
    let plot_w = W - LEFT - VALUE;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart hbars" viewBox="0 0 {W} {h}" role="img" aria-label="{t}: total {total}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title><text x="4" y="14" class="chart-title">{t} (total {total})</text>"#,
        t = escape(title),
        total = escape(&show(total)),
    );
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" class="axis"/>"#,
        h - 8.0
    );
    for (i, b) in sorted.iter().enumerate() {
        let y = TOP + i as f64 * ROW;
        let w = if max > 0.0 {
            b.value / max * plot_w
        } else {
            0.0
        };
        let mid = y + ROW / 2.0 + TICK_FONT * 0.35;
        let _ = write!(
            svg,
            r#"<g class="row" data-value="{v}"><title>{l}: {s}</title><text x="{:.1}" y="{mid:.1}" class="tick y-label" text-anchor="end">{}</text><rect class="bar" x="{LEFT}" y="{:.1}" width="{w:.1}" height="{:.1}"/><text x="{:.1}" y="{mid:.1}" class="tick value">{s}</text></g>"#,
            LEFT - 6.0,
            escape(&cut(&b.label, NAME_CHARS)),
            y + ROW * 0.15,
            ROW * 0.7,
            LEFT + w + 4.0,
            v = b.value,
            l = escape(&b.label),
            s = escape(&show(b.value)),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "a<b",
            &[
                Bar {
                    label: "x&y".into(),
                    value: 1.0,
                },
                Bar {
                    label: "z".into(),
                    value: 4.0,
                },
            ],
            |v| format!("{v}"),
        );
        assert!(svg.contains("a&lt;b (total 5)"));
        assert!(svg.contains("<title>x&amp;y: 1</title>"));
        // The largest bar fills the plot height (200 - 28 - 24).
        assert!(svg.contains(r#"height="148.0"><title>z: 4</title>"#));
        assert!(svg.contains(r#"height="37.0"><title>x&amp;y: 1</title>"#));
    }

    #[test]
    fn time_labels_are_spaced_so_they_never_meet() {
        let hours: Vec<Bar> = (0..24)
            .map(|h| Bar {
                label: format!("{h:02}:00"),
                value: 1.0,
            })
            .collect();
        let svg = bars("t", &hours, |v| format!("{v}"));
        // 24 slots of 23.7 units; `00:00` takes 32.5 + a 10 gap: every 2nd.
        assert_eq!(svg.matches("x-label").count(), 12, "{svg}");
        let slot = (640.0 - 64.0 - 8.0) / 24.0;
        let step = label_every(&hours, slot) as f64 * slot;
        assert!(step >= label_width("00:00") + TICK_FONT);
    }

    #[test]
    fn hbars_are_sorted_by_value_and_names_cut() {
        let svg = hbars(
            "p",
            &[
                Bar {
                    label: "small".into(),
                    value: 1.0,
                },
                Bar {
                    label: "a-very-long-poller-name-of-forty-chars-x".into(),
                    value: 9.0,
                },
                Bar {
                    label: "mid".into(),
                    value: 5.0,
                },
            ],
            |v| format!("{v}"),
        );
        let order: Vec<&str> = svg
            .split(r#"data-value=""#)
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert_eq!(order, ["9", "5", "1"]);
        assert!(svg.contains(">a-very-long-poller-na…</text>"), "{svg}");
        assert!(svg.contains("<title>a-very-long-poller-name-of-forty-chars-x: 9</title>"));
    }
}
