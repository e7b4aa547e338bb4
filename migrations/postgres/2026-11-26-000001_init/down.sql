DROP TABLE api_tokens;
DROP TABLE principals;
DROP TABLE clusters;
