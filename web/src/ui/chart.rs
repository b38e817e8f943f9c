//! Bar charts drawn as SVG on the server: no script, no vendored library,
//! and each bar carries its value as text (a `<title>` tooltip) so the
//! chart is readable without colour or a mouse.

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

/// An SVG bar chart; `show` formats a value (bytes, counts).
pub fn bars(title: &str, bars: &[Bar], show: impl Fn(f64) -> String) -> String {
    const W: f64 = 640.0;
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
    let label_every = (bars.len() / 12).max(1);
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
                r#"<text x="{:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
                x + slot * 0.4,
                H - 10.0,
                escape(&b.label),
            );
        }
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
}
