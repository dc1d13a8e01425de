
/// One shopper action as ingested at the edge. Never leaves the agent.
package struct BehaviorEvent: Sendable, Equatable, Hashable {
    package enum Action: UInt8, Sendable, CaseIterable, Codable {
        case view = 0, cart = 1, favourite = 2, purchase = 3

        /// Accepts Taobao's codes (`pv`, `cart`, `fav`, `buy`) and the plain names.
        package init?(code: some StringProtocol) {
            switch code {
            case "pv", "view": self = .view
            case "cart": self = .cart
            case "fav", "favourite", "favorite": self = .favourite
            case "buy", "purchase": self = .purchase
            default: return nil
            }
        }

        /// Taobao's code for the action.
        package var code: String {
            switch self {
            case .view: "pv"
            case .cart: "cart"
            case .favourite: "fav"
            case .purchase: "buy"
            }
        }
    }

    package var user: UInt64
    package var item: UInt64
    /// The platform's category id (mapped to a model index by the catalog).
    package var category: UInt64
    package var action: Action
    /// Unix time, seconds.
    package var timestamp: Int64

    package init(user: UInt64, item: UInt64, category: UInt64, action: Action, timestamp: Int64) {
        self.user = user
        self.item = item
        self.category = category
        self.action = action
        self.timestamp = timestamp
    }
}
