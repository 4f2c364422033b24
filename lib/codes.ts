/**
 * The close codes of the sigver protocol (4741-4745), shared by the server
 * and the client.
 *
 * @module
 */

/** Key empty, or longer than 512 characters. */
export const ERR_KEY = 4741;
/** Three heartbeat periods in a row without a heartbeat from the peer. */
export const ERR_HEARTBEAT = 4742;
/** Text frame, undecodable frame, or message with no type. */
export const ERR_MESSAGE = 4743;
/** The peer was the only member and blocked a joining peer: replaced. */
export const ERR_BLOCKING_MEMBER = 4744;
/** The request URL cannot be parsed, or sending to the peer failed. */
export const ERR_URL = 4745;
