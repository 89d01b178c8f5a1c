/*
 * frec.h - the fixed-size record of one survey response, as the analytics
 * (fan.h) read it.
 *
 * Why fixed records: GetScores and GapAnalysis scan every response in a
 * time range; decoding protobuf per response would cost more than the
 * arithmetic. The store (fdb.h) keeps one frec per response in answer-time
 * order, next to the full response, and writes both in the same
 * transaction. Names (survey ids, touchpoints) are dictionary ids of the
 * store; 0 means "none".
 */
#ifndef CXM_FREC_H
#define CXM_FREC_H

#include <stddef.h>
#include <stdint.h>

#define FREC_MAX_RATINGS 20 /* ExpectationRatings of one response */

typedef struct frec_rating {
    uint32_t touchpoint; /* dictionary id, never 0 */
    uint32_t reserved;   /* 0 */
    double expectation;  /* 1 to 7 */
    double experience;   /* 1 to 7 */
} frec_rating;

typedef struct frec {
    int64_t at_ms;         /* when it was answered (Unix ms) */
    uint64_t customer;     /* cxm_hash(0, id, len) of the customer id it was recorded under */
    uint32_t survey;       /* dictionary id of survey_id */
    uint32_t touchpoint;   /* dictionary id of the response's touchpoint; 0 = none */
    uint8_t kind;          /* Cxm__V1__SurveyKind */
    uint8_t channel;       /* Cxm__V1__Channel */
    uint8_t stage;         /* Cxm__V1__JourneyStage */
    uint8_t score;         /* the integer score on the kind's scale */
    uint8_t sentiment;     /* Cxm__V1__SentimentLabel of the text; 0 = no text */
    uint8_t nratings;      /* 0 .. FREC_MAX_RATINGS */
    uint16_t reserved;     /* 0 */
    float sentiment_score; /* -1 to 1 */
    uint32_t reserved2;    /* 0 */
    frec_rating ratings[]; /* nratings of them */
} frec;

/* Bytes of a record with n ratings. */
static inline size_t frec_size(unsigned n)
{
    return sizeof(frec) + (size_t)n * sizeof(frec_rating);
}

#endif
