package import Foundation

/// Reads back what an ``SVGChart`` drew: each chart's scales (`data-x-domain`, `data-y-domain`,
/// `data-plot`) and every mark with its data and position, so a test can check that each point sits
/// where its value says.
package struct SVGReader {
    package struct Mark {
        package var series: String
        package var x: Double
        package var y: Double
        /// Where it was drawn: a circle's centre, or a bar's top centre.
        package var at: (x: Double, y: Double)
        package var isBar: Bool
    }

    package struct Chart {
        package var label: String
        package var xDomain: (Double, Double)
        package var yDomain: (Double, Double)
        package var plot: (left: Double, top: Double, width: Double, height: Double)
        package var marks: [Mark]

        /// Where a value should be drawn, by the chart's stated scales.
        package func expected(x: Double, y: Double) -> (x: Double, y: Double) {
            let clamped = min(max(y, yDomain.0), yDomain.1)
            return (plot.left + (x - xDomain.0) / (xDomain.1 - xDomain.0) * plot.width,
                    plot.top + plot.height - (clamped - yDomain.0) / (yDomain.1 - yDomain.0) * plot.height)
        }

        /// Marks drawn more than `tolerance` pixels from where their data says.
        package func misplaced(tolerance: Double = 0.02) -> [Mark] {
            marks.filter { mark in
                let want = expected(x: mark.x, y: mark.y)
                return abs(want.x - mark.at.x) > tolerance || abs(want.y - mark.at.y) > tolerance
            }
        }

        package func points(_ series: String) -> [(x: Double, y: Double)] {
            marks.filter { $0.series == series }.map { ($0.x, $0.y) }
        }
    }

    static func attribute(_ name: String, in tag: Substring) -> String? {
        guard let range = tag.range(of: " \(name)=\"") else { return nil }
        let rest = tag[range.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    static func numbers(_ text: String?) -> [Double] { (text ?? "").split(separator: " ").compactMap { Double($0) } }

    /// Every `<svg class="chart">` of `html`, in order.
    package static func charts(in html: String) -> [Chart] {
        var charts: [Chart] = []
        for piece in html.components(separatedBy: "<svg class=\"chart\"").dropFirst() {
            guard let end = piece.range(of: "</svg>") else { continue }
            let svg = Substring(piece[..<end.lowerBound])
            let head = svg[..<(svg.firstIndex(of: ">") ?? svg.endIndex)]
            let xd = numbers(attribute("data-x-domain", in: head)), yd = numbers(attribute("data-y-domain", in: head))
            let plot = numbers(attribute("data-plot", in: head))
            guard xd.count == 2, yd.count == 2, plot.count == 4 else { continue }
            var marks: [Mark] = []
            for tag in svg.split(separator: "<") where tag.hasPrefix("circle ") || tag.hasPrefix("rect data-series") {
                guard let series = attribute("data-series", in: tag), let x = Double(attribute("data-x", in: tag) ?? ""),
                      let y = Double(attribute("data-y", in: tag) ?? "") else { continue }
                if tag.hasPrefix("circle ") {
                    guard let cx = Double(attribute("cx", in: tag) ?? ""), let cy = Double(attribute("cy", in: tag) ?? "") else { continue }
                    marks.append(Mark(series: series, x: x, y: y, at: (cx, cy), isBar: false))
                } else {
                    guard let left = Double(attribute("x", in: tag) ?? ""), let top = Double(attribute("y", in: tag) ?? ""),
                          let width = Double(attribute("width", in: tag) ?? ""),
                          let height = Double(attribute("height", in: tag) ?? "") else { continue }
                    // A bar above the axis: its top is the value (a negative bar hangs below it).
                    let centre: Double = left + width / 2
                    let end: Double = y >= 0 ? top : top + height
                    marks.append(Mark(series: series, x: x, y: y, at: (x: centre, y: end), isBar: true))
                }
            }
            charts.append(Chart(label: attribute("aria-label", in: head) ?? "", xDomain: (xd[0], xd[1]),
                                yDomain: (yd[0], yd[1]), plot: (plot[0], plot[1], plot[2], plot[3]), marks: marks))
        }
        return charts
    }
}
