//! Plain-text tables in kubectl's style: upper-case headers, columns three spaces apart.

/// Renders `rows` under `headers`; every row has one cell per header.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let out = render(
            &["NAME", "PHASE", "ROUTE"],
            &[
                vec![
                    "gateserver-sample".into(),
                    "Ready".into(),
                    "gw.example.com".into(),
                ],
                vec!["b".into(), "".into(), "<none>".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME                PHASE   ROUTE\n\
             gateserver-sample   Ready   gw.example.com\n\
             b                           <none>\n"
        );
    }
}
