import Foundation

/// A chart drawn as inline SVG, server-side, with no script and no external asset. Every plotted point
/// carries its data (`data-x`, `data-y`) beside its position, and the `<svg>` states its scales
/// (`data-x-domain`, `data-y-domain`, `data-plot` = left top width height), so a reader — or a test —
/// can check that each mark sits where its value says:
///
///     px = left + (x − x0) / (x1 − x0) · width,   py = top + height − (y − y0) / (y1 − y0) · height
package struct SVGChart: Sendable {
    package enum Style: Sendable { case line, bars }

    package struct Series: Sendable {
        package var name: String
        package var color: String
        package var style: Style = .line
        package var points: [(x: Double, y: Double)]
        /// A colour per point for bars (e.g. failed rounds in red); nil: the series colour.
        package var pointColors: [String]?

        package init(name: String, color: String, style: Style = .line, points: [(x: Double, y: Double)],
                     pointColors: [String]? = nil) {
            (self.name, self.color, self.style, self.points, self.pointColors) = (name, color, style, points, pointColors)
        }
    }

    /// A horizontal line across the plot, e.g. a budget.
    package struct Reference: Sendable {
        package var label: String
        package var y: Double
        package var color: String
        package init(label: String, y: Double, color: String) { (self.label, self.y, self.color) = (label, y, color) }
    }

    package var title: String
    package var xLabel: String
    package var yLabel: String
    package var series: [Series]
    package var references: [Reference] = []
    /// Fixed y range (e.g. 0…1 for accuracy); nil: from 0 (or the least value, if negative) to the largest, with room.
    package var yDomain: ClosedRange<Double>?
    package var width = 560.0
    package var height = 220.0
    /// Format of the y tick labels.
    package var yFormat: @Sendable (Double) -> String = { SVGChart.compact($0) }

    static let margin = (left: 52.0, right: 14.0, top: 42.0, bottom: 34.0)

    package init(title: String, xLabel: String, yLabel: String, series: [Series], references: [Reference] = [],
                 yDomain: ClosedRange<Double>? = nil) {
        (self.title, self.xLabel, self.yLabel, self.series, self.references, self.yDomain)
            = (title, xLabel, yLabel, series, references, yDomain)
    }

    /// The x and y ranges the chart maps to its plot area.
    package var domains: (x: ClosedRange<Double>, y: ClosedRange<Double>) {
        let xs = series.flatMap { $0.points.map(\.x) }.filter(\.isFinite)
        var x0 = xs.min() ?? 0, x1 = xs.max() ?? 1
        if series.contains(where: { $0.style == .bars }) { (x0, x1) = (x0 - 0.5, x1 + 0.5) }
        if x1 <= x0 { (x0, x1) = (x0 - 0.5, x0 + 0.5) }
        if let yDomain { return (x0...x1, yDomain) }
        let ys = (series.flatMap { $0.points.map(\.y) } + references.map(\.y)).filter(\.isFinite)
        let low = min(0, ys.min() ?? 0)
        var high = (ys.max() ?? 1) * 1.1
        if high <= low { high = low + 1 }
        return (x0...x1, low...high)
    }

    /// The plot area: left, top, width, height.
    package var plot: (left: Double, top: Double, width: Double, height: Double) {
        (Self.margin.left, Self.margin.top, width - Self.margin.left - Self.margin.right,
         height - Self.margin.top - Self.margin.bottom)
    }

    package func position(x: Double, y: Double) -> (x: Double, y: Double) {
        let (xd, yd) = domains, p = plot
        let clampedY = min(max(y, yd.lowerBound), yd.upperBound)
        return (p.left + (x - xd.lowerBound) / (xd.upperBound - xd.lowerBound) * p.width,
                p.top + p.height - (clampedY - yd.lowerBound) / (yd.upperBound - yd.lowerBound) * p.height)
    }

    package func render() -> String {
        let (xd, yd) = domains, p = plot
        var svg = """
            <svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \(Self.number(width)) \(Self.number(height))" \
            width="\(Self.number(width))" height="\(Self.number(height))" role="img" aria-label="\(HTML.escape(title))" \
            data-x-domain="\(xd.lowerBound) \(xd.upperBound)" data-y-domain="\(yd.lowerBound) \(yd.upperBound)" \
            data-plot="\(Self.number(p.left)) \(Self.number(p.top)) \(Self.number(p.width)) \(Self.number(p.height))">
            <text x="8" y="15" class="title">\(HTML.escape(title))</text>

            """
        // Axes, y ticks and grid.
        for index in 0...4 {
            let value = yd.lowerBound + Double(index) / 4 * (yd.upperBound - yd.lowerBound)
            let y = position(x: xd.lowerBound, y: value).y
            svg += "<line class=\"grid\" x1=\"\(Self.number(p.left))\" x2=\"\(Self.number(p.left + p.width))\" "
                + "y1=\"\(Self.number(y))\" y2=\"\(Self.number(y))\"/>"
                + "<text class=\"tick\" x=\"\(Self.number(p.left - 4))\" y=\"\(Self.number(y + 3))\" text-anchor=\"end\">"
                + "\(HTML.escape(yFormat(value)))</text>\n"
        }
        for value in Self.xTicks(xd) {
            let x = position(x: value, y: yd.lowerBound).x
            svg += "<text class=\"tick\" x=\"\(Self.number(x))\" y=\"\(Self.number(p.top + p.height + 14))\" "
                + "text-anchor=\"middle\">\(Self.compact(value))</text>\n"
        }
        svg += "<text class=\"axis\" x=\"\(Self.number(p.left + p.width / 2))\" y=\"\(Self.number(height - 4))\" "
            + "text-anchor=\"middle\">\(HTML.escape(xLabel))</text>\n"
        svg += "<text class=\"axis\" x=\"12\" y=\"\(Self.number(p.top + p.height / 2))\" text-anchor=\"middle\" "
            + "transform=\"rotate(-90 12 \(Self.number(p.top + p.height / 2)))\">\(HTML.escape(yLabel))</text>\n"
        for reference in references where reference.y.isFinite {
            let y = position(x: xd.lowerBound, y: reference.y).y
            svg += "<line class=\"reference\" data-reference=\"\(HTML.escape(reference.label))\" "
                + "data-y=\"\(reference.y)\" x1=\"\(Self.number(p.left))\" x2=\"\(Self.number(p.left + p.width))\" "
                + "y1=\"\(Self.number(y))\" y2=\"\(Self.number(y))\" stroke=\"\(reference.color)\"/>"
                + "<text class=\"tick\" x=\"\(Self.number(p.left + p.width - 2))\" y=\"\(Self.number(y - 3))\" "
                + "text-anchor=\"end\" fill=\"\(reference.color)\">\(HTML.escape(reference.label))</text>\n"
        }
        let barCount = max(1, Int((xd.upperBound - xd.lowerBound).rounded()))
        let barWidth = max(1, p.width / Double(barCount) * 0.7)
        for series in series {
            let points = series.points.filter { $0.x.isFinite && $0.y.isFinite }
            let name = HTML.escape(series.name)
            switch series.style {
            case .line:
                let coordinates = points.map { position(x: $0.x, y: $0.y) }
                svg += "<polyline class=\"series\" data-series=\"\(name)\" fill=\"none\" stroke=\"\(series.color)\" "
                    + "stroke-width=\"2\" points=\"" + coordinates.map { "\(Self.number($0.x)),\(Self.number($0.y))" }
                        .joined(separator: " ") + "\"/>\n"
                for (point, at) in zip(points, coordinates) {
                    svg += "<circle data-series=\"\(name)\" data-x=\"\(point.x)\" data-y=\"\(point.y)\" "
                        + "cx=\"\(Self.number(at.x))\" cy=\"\(Self.number(at.y))\" r=\"2.5\" fill=\"\(series.color)\">"
                        + "<title>\(name) \(Self.compact(point.x)): \(HTML.escape(yFormat(point.y)))</title></circle>\n"
                }
            case .bars:
                let base = position(x: 0, y: max(yd.lowerBound, 0)).y
                for (index, point) in series.points.enumerated() where point.x.isFinite && point.y.isFinite {
                    let at = position(x: point.x, y: point.y)
                    let color = series.pointColors.flatMap { index < $0.count ? $0[index] : nil } ?? series.color
                    svg += "<rect data-series=\"\(name)\" data-x=\"\(point.x)\" data-y=\"\(point.y)\" "
                        + "x=\"\(Self.number(at.x - barWidth / 2))\" y=\"\(Self.number(min(at.y, base)))\" "
                        + "width=\"\(Self.number(barWidth))\" height=\"\(Self.number(abs(base - at.y)))\" fill=\"\(color)\">"
                        + "<title>\(name) \(Self.compact(point.x)): \(HTML.escape(yFormat(point.y)))</title></rect>\n"
                }
            }
        }
        // Legend.
        var legendX = p.left
        for series in series where series.style == .line {
            svg += "<rect x=\"\(Self.number(legendX))\" y=\"21\" width=\"10\" height=\"10\" fill=\"\(series.color)\"/>"
                + "<text class=\"tick\" x=\"\(Self.number(legendX + 14))\" y=\"30\">\(HTML.escape(series.name))</text>\n"
            legendX += 24 + Double(series.name.count) * 6.5
        }
        if series.allSatisfy({ $0.points.isEmpty }) {
            svg += "<text class=\"empty\" x=\"\(Self.number(p.left + p.width / 2))\" y=\"\(Self.number(p.top + p.height / 2))\" "
                + "text-anchor=\"middle\">no data yet</text>\n"
        }
        return svg + "</svg>"
    }

    /// Up to 8 whole-number ticks across `domain`.
    static func xTicks(_ domain: ClosedRange<Double>) -> [Double] {
        let low = domain.lowerBound.rounded(.up), high = domain.upperBound.rounded(.down)
        guard high >= low else { return [] }
        let step = max(1, ((high - low) / 7).rounded(.up))
        return Array(stride(from: low, through: high, by: step))
    }

    /// Coordinates with two decimals (a hundredth of a pixel); data attributes carry the exact values.
    static func number(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(format: "%.2f", rounded)
    }

    package static func compact(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e6 { return String(Int(value)) }
        if abs(value) >= 100 { return String(format: "%.0f", value) }
        if abs(value) >= 1 { return String(format: "%.2f", value) }
        return String(format: "%.3f", value)
    }
}

/// Escaping for text and attribute values in HTML and SVG.
package enum HTML {
    package static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        // Over scalars, not Characters: a quote followed by a combining mark is one Character that is
        // not equal to "\"", yet browsers read the quote.
        for scalar in text.unicodeScalars {
            switch Character(scalar) {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
